#define NST_IMPLEMENTATION
#include "nst.h"
