# Turns IN (a file) into OUT (a C file defining pf_page_html and pf_page_html_len).
file(READ ${IN} hex HEX)
string(LENGTH "${hex}" hexlen)
math(EXPR len "${hexlen} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
file(WRITE ${OUT} "/* generated from www/index.html by embed.cmake */\nconst unsigned char pf_page_html[] = {${bytes}0};\nconst unsigned int pf_page_html_len = ${len};\n")
