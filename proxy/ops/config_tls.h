// The tls-* settings of Config: their flags (Redis's names), their checks and contexts, and
// their line in the startup log. Kept apart from config.cc, which includes this.
#pragma once

#include <string>

#include "proxy/ops/config.h"

namespace CLI {
class App;
}

namespace respite {

void add_tls_options(CLI::App& app, Config& cfg);
// Checks the TLS settings that need no file: an error text, or "". The files are read when
// main.cc makes the contexts (TlsContext::make), which refuses to start on an error too.
std::string finalize_tls(Config& cfg);
std::string describe_tls(const Config& cfg);

}  // namespace respite
