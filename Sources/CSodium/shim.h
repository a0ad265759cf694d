#ifndef PARLEY_CSODIUM_SHIM_H
#define PARLEY_CSODIUM_SHIM_H
// libsodium (Debian's libsodium-dev): Argon2id password hashing.
#include <sodium.h>
#endif
