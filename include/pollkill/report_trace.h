// `pollkill report --trace FILE`: the batch as Chrome / Perfetto trace-event JSON (the
// "JSON Object Format" of the Trace Event Format), for ui.perfetto.dev and chrome://tracing.
#pragma once

#include <string>

#include "pollkill/timeline.h"

namespace pollkill {

/// One process per host (one, "pollkill batch", for a local batch), one thread per lane
/// (named by the lane, sorted by its number), one complete event ("ph": "X") per attempt
/// with a start: name the task id (and the attempt when it is a retry), category the status,
/// `ts`/`dur` in microseconds from the first start, the record's fields in `args`. Viewers
/// nest overlapping events of one thread, so an event is cut where the next one on its lane
/// starts (the lanes allow a few milliseconds of recorded overlap, see assign_lanes); `args`
/// keeps the real wall time. `otherData` names the source, the first start (RFC 3339) and
/// how the lanes were made.
std::string render_trace(const BatchRecords& batch, const std::string& source);

}  // namespace pollkill
