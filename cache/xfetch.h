// The early-refresh decision of XFetch (Vattani, Chierichetti, Lowenstein, "Optimal Probabilistic
// Cache Stampede Prevention", VLDB 2015). Pure, so tests can pass the random draw.
#pragma once

#include <cmath>

namespace cache {

// True when a reader at `now` should refresh an entry expiring at `expiry` before it expires:
//   now - delta * beta * ln(rand01) >= expiry
// `delta` is how long the last fetch of that entry took and `beta` scales eagerness (1.0 is the
// paper's optimum). All times in one unit of the caller's choice. `rand01` is a uniform draw in
// (0, 1]; 0 would mean ln(0) = -inf and counts as "refresh now". With beta or delta 0 (or less)
// the rule degenerates to `now >= expiry`, i.e. never early: that is how beta 0 turns it off.
inline bool should_refresh_early(double now, double expiry, double delta, double beta,
                                 double rand01) {
  if (!(beta > 0) || !(delta > 0)) return now >= expiry;
  if (!(rand01 > 0)) return true;
  return now - delta * beta * std::log(rand01) >= expiry;
}

}  // namespace cache
