/* Compiled alone (as C99 and as C++11, -pedantic -Werror) by the header_c99 and
 * header_cxx11 tests: the public header must be self-contained and warning-free.
 * Included twice to check the include guard. */
#include "wfengine.h"
