#ifndef PARLEY_CCRACK_SHIM_H
#define PARLEY_CCRACK_SHIM_H
// cracklib (Debian's libcrack2-dev; the dictionary comes with cracklib-runtime):
// refuses passwords that are dictionary words, simple variations of them,
// or too simplistic.
#include <stddef.h>
#include <crack.h>
#endif
