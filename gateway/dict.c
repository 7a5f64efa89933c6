/* dict.c - see dict.h. */
#include "dict.h"

#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

/* FNV-1a over the key, seeded, with a murmur finalizer so the low bits (the bucket index) mix. */
static uint64_t pf_dict_hash(uint64_t seed, const char *key, size_t klen)
{
    uint64_t h = 1469598103934665603ULL ^ seed;
    size_t i;

    for (i = 0; i < klen; i++) {
        h ^= (unsigned char)key[i];
        h *= 1099511628211ULL;
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return h;
}

int pf_dict_init(struct pf_dict *d)
{
    memset(d, 0, sizeof(*d));
    if (getrandom(&d->seed, sizeof(d->seed), GRND_NONBLOCK) != (ssize_t)sizeof(d->seed))
        d->seed = (uint64_t)time(NULL) * 0x9E3779B97F4A7C15ULL ^ (uint64_t)(uintptr_t)d;
    d->buckets = calloc(16, sizeof(*d->buckets));
    if (!d->buckets)
        return -1;
    d->mask = 15;
    return 0;
}

void pf_dict_free(struct pf_dict *d)
{
    size_t i;

    if (!d->buckets)
        return;
    for (i = 0; i <= d->mask; i++) {
        struct pf_dict_entry *e = d->buckets[i], *next;
        for (; e; e = next) {
            next = e->next;
            free(e);
        }
    }
    free(d->buckets);
    d->buckets = NULL;
    d->count = 0;
}

static struct pf_dict_entry **pf_dict_find(const struct pf_dict *d, const char *key, size_t klen)
{
    uint64_t h = pf_dict_hash(d->seed, key, klen);
    struct pf_dict_entry **pe = &d->buckets[h & d->mask];

    for (; *pe; pe = &(*pe)->next)
        if ((*pe)->hash == h && (*pe)->klen == klen && !memcmp((*pe)->key, key, klen))
            return pe;
    return pe;
}

void *pf_dict_get(const struct pf_dict *d, const char *key, size_t klen)
{
    struct pf_dict_entry **pe = pf_dict_find(d, key, klen);

    return *pe ? (*pe)->val : NULL;
}

static void pf_dict_grow(struct pf_dict *d)
{
    size_t n = (d->mask + 1) * 2, i;
    struct pf_dict_entry **nb = calloc(n, sizeof(*nb));

    if (!nb)
        return; /* stay at the current size: slower, still correct */
    for (i = 0; i <= d->mask; i++) {
        struct pf_dict_entry *e = d->buckets[i], *next;
        for (; e; e = next) {
            next = e->next;
            e->next = nb[e->hash & (n - 1)];
            nb[e->hash & (n - 1)] = e;
        }
    }
    free(d->buckets);
    d->buckets = nb;
    d->mask = n - 1;
}

struct pf_dict_entry *pf_dict_add(struct pf_dict *d, const char *key, size_t klen, void *val)
{
    struct pf_dict_entry *e = malloc(sizeof(*e) + klen + 1);
    size_t b;

    if (!e)
        return NULL;
    if (d->count >= d->mask + 1)
        pf_dict_grow(d);
    e->hash = pf_dict_hash(d->seed, key, klen);
    e->val = val;
    e->klen = klen;
    memcpy(e->key, key, klen);
    e->key[klen] = 0;
    b = e->hash & d->mask;
    e->next = d->buckets[b];
    d->buckets[b] = e;
    d->count++;
    return e;
}

void *pf_dict_del(struct pf_dict *d, const char *key, size_t klen)
{
    struct pf_dict_entry **pe = pf_dict_find(d, key, klen), *e = *pe;
    void *val;

    if (!e)
        return NULL;
    *pe = e->next;
    val = e->val;
    free(e);
    d->count--;
    return val;
}
