/* dict.h - a string-keyed hash table (chained, power-of-two buckets, grows at load 1).
 *
 * Owns: its buckets and entries, and a private copy of each key. Must not: be touched by more
 * than one thread; each shard and the Redis link have their own. Keys are byte strings (with a
 * length), hashed with a per-table random seed so clients cannot choose colliding names cheaply. */
#ifndef PF_DICT_H
#define PF_DICT_H

#include <stddef.h>
#include <stdint.h>

struct pf_dict_entry {
    struct pf_dict_entry *next;
    uint64_t hash;
    void *val;
    size_t klen;
    char key[]; /* NUL-terminated copy */
};

struct pf_dict {
    struct pf_dict_entry **buckets;
    size_t mask; /* buckets - 1 */
    size_t count;
    uint64_t seed;
};

int pf_dict_init(struct pf_dict *d);
/* Frees the table and keys; values belong to the caller. */
void pf_dict_free(struct pf_dict *d);
void *pf_dict_get(const struct pf_dict *d, const char *key, size_t klen);
/* Adds key -> val (key must be absent); returns the entry (its key copy lives as long as it)
 * or NULL when out of memory. */
struct pf_dict_entry *pf_dict_add(struct pf_dict *d, const char *key, size_t klen, void *val);
/* Removes key; returns its value or NULL. */
void *pf_dict_del(struct pf_dict *d, const char *key, size_t klen);

/* Iteration: for (i = 0; i <= d->mask; i++) for (e = d->buckets[i]; e; e = e->next). Do not
 * add or delete while iterating. */

#endif
