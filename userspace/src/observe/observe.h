// observe/ - what the kernel's observation maps say, with names: counters
// per attachment and direction, policy rule hits, flow and drop events, lost
// events, live connections (bpf/abi.h, "Observation"; bpf/lib/observe.h),
// and the long-running readers built on them (event reader, exporter, top).
// It may use util/, config/, policy/ and dataplane/ (the pinned maps); the
// CLI uses it, never the other way round: signals, exit codes and what is
// printed to the terminal stay in cli/.
//
// Split so that everything but reading the maps is pure and unit-tested:
//   Names     <- the instance's state file (+ the saved config, for
//                namespaces, labels and which policies isolate whom)   names.h
//   Snapshot  <- the pinned maps (read_snapshot), a plain struct       snapshot.h
//   stats JSON, Prometheus text, event JSON/text, filters <- pure      snapshot.h, events.h
//   rates between snapshots                                            top.h
//   the ring buffer and the HTTP exporter                              events_reader.h, exporter.h
// This header includes them all: include it, not the parts.
#pragma once

#include "observe/events.h"
#include "observe/events_reader.h"
#include "observe/exporter.h"
#include "observe/names.h"
#include "observe/snapshot.h"
#include "observe/top.h"
