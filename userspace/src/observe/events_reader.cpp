#include "observe/events_reader.h"

#include <bpf/libbpf.h>

#include <chrono>
#include <cstring>

#include "dataplane/dataplane.h"
#include "endpoint.skel.h"

namespace moat::obs {

// Heap-held: libbpf keeps a pointer to it as the callback's context.
struct EventReader::Impl {
  std::string instance;
  Names names;
  FlowFilter filter;
  Sink sink;
  int64_t wall_offset = 0;
  uint64_t seen = 0, shown = 0;
  std::optional<PinnedMaps> maps;  // the ring buffer's map, open while it is read
  std::unique_ptr<ring_buffer, void (*)(ring_buffer*)> rb{nullptr, ring_buffer__free};

  static int on_event(void* ctx, void* data, size_t size) {
    auto* r = static_cast<Impl*>(ctx);
    if (size < sizeof(moat_event)) return 0;
    moat_event ev;
    memcpy(&ev, data, sizeof(ev));
    ++r->seen;
    auto j = event_json(ev, r->names, r->wall_offset);
    if (!matches(j, r->filter)) return 0;
    ++r->shown;
    return r->sink(j) ? 0 : -EPIPE;  // the reader went away: stop
  }
};

EventReader::EventReader(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
EventReader::EventReader(EventReader&&) noexcept = default;
EventReader& EventReader::operator=(EventReader&&) noexcept = default;
EventReader::~EventReader() = default;

Result<EventReader> EventReader::open(const std::string& instance, Names names, FlowFilter filter,
                                      Sink sink) {
  auto impl = std::make_unique<Impl>();
  impl->instance = instance;
  impl->names = std::move(names);
  impl->filter = std::move(filter);
  impl->sink = std::move(sink);
  impl->wall_offset = wall_offset_ns();
  auto maps = open_pinned(instance);
  if (!maps) return std::unexpected(maps.error());
  impl->maps.emplace(std::move(*maps));
  ring_buffer* rb = ring_buffer__new(bpf_map__fd((*impl->maps)->maps.events), Impl::on_event,
                                     impl.get(), nullptr);
  if (!rb) return fail("open the event ring buffer of " + instance + ": " + strerror(errno));
  impl->rb.reset(rb);
  return EventReader(std::move(impl));
}

Result<void> EventReader::drain() {
  int n = ring_buffer__consume(impl_->rb.get());
  if (n < 0 && n != -EPIPE) return fail("read events: " + std::string(strerror(-n)));
  return {};
}

Result<void> EventReader::follow(Sweeper& sweeper, const std::function<bool()>& stop,
                                 const std::function<std::optional<Names>()>& names) {
  auto last_names = std::chrono::steady_clock::now();
  while (true) {
    sweeper.maybe_sweep();
    int n = ring_buffer__poll(impl_->rb.get(), 200);
    if (n == -EPIPE) break;
    if (n < 0 && n != -EINTR) return fail("read events: " + std::string(strerror(-n)));
    if (stop()) break;
    if (std::chrono::steady_clock::now() - last_names > std::chrono::seconds(2)) {
      auto fresh = names();
      if (!fresh) return fail("instance " + impl_->instance + " went away");
      impl_->names = std::move(*fresh);
      last_names = std::chrono::steady_clock::now();
    }
  }
  return {};
}

uint64_t EventReader::seen() const { return impl_->seen; }
uint64_t EventReader::shown() const { return impl_->shown; }

}  // namespace moat::obs
