#include "proxy/ops/log.h"

#include <sys/time.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <ctime>

namespace respite {

namespace {
std::atomic<LogLevel> g_level{LogLevel::Notice};
FILE* g_out = nullptr;
}  // namespace

bool parse_log_level(std::string_view s, LogLevel& out) {
  if (s == "debug") out = LogLevel::Debug;
  else if (s == "verbose" || s == "info") out = LogLevel::Verbose;
  else if (s == "notice") out = LogLevel::Notice;
  else if (s == "warning" || s == "warn") out = LogLevel::Warning;
  else return false;
  return true;
}

std::string_view log_level_name(LogLevel l) {
  switch (l) {
    case LogLevel::Debug: return "debug";
    case LogLevel::Verbose: return "verbose";
    case LogLevel::Notice: return "notice";
    case LogLevel::Warning: return "warning";
  }
  return "notice";
}

void set_log_level(LogLevel l) { g_level = l; }
LogLevel log_level() { return g_level; }

bool set_log_file(const std::string& path) {
  if (path.empty()) {
    g_out = nullptr;
    return true;
  }
  FILE* f = std::fopen(path.c_str(), "a");
  if (!f) return false;
  g_out = f;
  return true;
}

void log_line(LogLevel l, std::string_view msg) {
  static const char marks[] = {'.', '-', '*', '#'};
  struct timeval tv;
  gettimeofday(&tv, nullptr);
  struct tm tm;
  localtime_r(&tv.tv_sec, &tm);
  char when[64];
  size_t n = std::strftime(when, sizeof when, "%d %b %Y %H:%M:%S", &tm);
  std::snprintf(when + n, sizeof when - n, ".%03d", static_cast<int>(tv.tv_usec / 1000));
  FILE* out = g_out ? g_out : stderr;
  std::fprintf(out, "%d:P %s %c %.*s\n", static_cast<int>(getpid()), when,
               marks[static_cast<int>(l)], static_cast<int>(msg.size()), msg.data());
  std::fflush(out);
}

}  // namespace respite
