// Cache is a template (on the proxy's waiter type) and lives in cache.h. Instantiating it here
// compiles every member with the library's warnings, whatever the proxy ends up using.
#include "cache/cache.h"

template class cache::Cache<uint64_t>;
template class cache::Flights<uint64_t>;
