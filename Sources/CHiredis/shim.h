#ifndef PARLEY_CHIREDIS_SHIM_H
#define PARLEY_CHIREDIS_SHIM_H
// hiredis is used only for what it does best: encoding commands
// (redisFormatCommandArgv) and parsing replies (redisReader). All I/O is SwiftNIO's.
#include <hiredis/hiredis.h>
#include <hiredis/read.h>
#endif
