// events_reader.h - reads an instance's flow and drop events from the
// kernel's ring buffer, names and filters them. Part of observe.h.
//
// The buffer has ONE consumer: two readers split the events between them.
// Printing and stopping (signals) belong to the caller: it gets each event
// through a sink and says when to stop.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "observe/events.h"
#include "observe/names.h"
#include "observe/sweeper.h"
#include "util/result.h"

namespace moat::obs {

class EventReader {
 public:
  // Gets every event that passes the filter; false: nobody reads them any
  // more (a closed pipe), stop reading.
  using Sink = std::function<bool(const nlohmann::json& event)>;

  static Result<EventReader> open(const std::string& instance, Names names, FlowFilter filter,
                                  Sink sink);
  EventReader(EventReader&&) noexcept;
  EventReader& operator=(EventReader&&) noexcept;
  ~EventReader();

  // The events queued now, then returns.
  Result<void> drain();
  // Until `stop` says so or the sink refuses, sweeping expired flows and
  // asking `names` for fresh names every 2 s (containers come and go with
  // `moat apply`; nullopt: the instance went away, an error).
  Result<void> follow(Sweeper& sweeper, const std::function<bool()>& stop,
                      const std::function<std::optional<Names>()>& names);

  uint64_t seen() const;   // events read
  uint64_t shown() const;  // events that passed the filter

 private:
  struct Impl;
  explicit EventReader(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace moat::obs
