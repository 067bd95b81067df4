// ncursesw for Swift: the library's macros and globals that Swift cannot
// import (COLOR_PAIR, getmaxyx, stdscr, ACS_* line glyphs) as functions.
#ifndef FORKSCOPE_CCURSES_SHIM_H
#define FORKSCOPE_CCURSES_SHIM_H
#ifndef _XOPEN_SOURCE_EXTENDED
#define _XOPEN_SOURCE_EXTENDED 1
#endif
#include <ncursesw/curses.h>
#include <locale.h>
#include <langinfo.h>

static inline WINDOW *fks_stdscr(void) { return stdscr; }
static inline int fks_color_pair(int n) { return (int)COLOR_PAIR(n); }
static inline int fks_lines(void) { return LINES; }
static inline int fks_cols(void) { return COLS; }
static inline void fks_getmaxyx(WINDOW *w, int *y, int *x) { int yy, xx; getmaxyx(w, yy, xx); *y = yy; *x = xx; }
static inline int fks_has_colors(void) { return has_colors(); }
static inline int fks_colors(void) { return COLORS; }
static inline int fks_key_resize(void) { return KEY_RESIZE; }
static inline attr_t fks_a_bold(void) { return A_BOLD; }
static inline attr_t fks_a_reverse(void) { return A_REVERSE; }
static inline attr_t fks_a_dim(void) { return A_DIM; }
static inline attr_t fks_a_underline(void) { return A_UNDERLINE; }
/// Masks for reading cells back (`winchnstr`): the character, and the colour pair.
static inline chtype fks_a_chartext(void) { return A_CHARTEXT; }
static inline attr_t fks_a_color(void) { return A_COLOR; }
static inline int fks_pair_number(attr_t a) { return (int)PAIR_NUMBER(a); }
static inline chtype fks_acs_hline(void) { return ACS_HLINE; }
static inline chtype fks_acs_vline(void) { return ACS_VLINE; }
/// Whether the current locale encodes text as UTF-8 (else ASCII glyphs).
static inline int fks_locale_is_utf8(void) {
    const char *cs = nl_langinfo(CODESET);
    return cs && (cs[0] == 'U' || cs[0] == 'u') && (cs[1] == 'T' || cs[1] == 't') && (cs[2] == 'F' || cs[2] == 'f');
}
#endif
