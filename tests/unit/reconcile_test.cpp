// The pure halves of reconcile: planning the exact map contents from a file
// and the host's facts (plan/map_plan.h), the inputs an instance keeps
// (config/inputs.h); and the instance lock, which must serialise writers
// across processes.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <thread>

#include "config/inputs.h"
#include "dataplane/failpoint.h"
#include "dataplane/host.h"
#include "dataplane/lock.h"
#include "parse_ok.h"
#include "plan/map_plan.h"
#include "util/fd.h"

namespace moat {
namespace {

const char* kFile = R"({
  "networks": [{"name": "front", "subnet": "10.1.0.0/24"}],
  "containers": [
    {"name": "web", "labels": {"app": "web"},
     "networks": [{"network": "front", "interface": "veth0"}], "publish": ["8080:80"]},
    {"name": "db", "networks": [{"network": "front", "interface": "veth1",
                                 "mac": "02:42:0A:01:00:03"}]}],
  "host": {"uplinks": ["up0"]}})";

HostFacts host_facts() {
  HostFacts h;
  h.ifindex = {{"veth0", 11}, {"veth1", 12}};
  h.uplinks = {{"up0", 2, inet_addr("198.18.0.1")}};
  // What veth0's peer has; db's attachment names its MAC, so none for veth1.
  h.macs = {{"veth0", {0x02, 0x42, 0x0a, 0x01, 0x00, 0x02}}};
  return h;
}

TEST(MapPlan, EveryMapEntryFromFileAndHost) {
  Config cfg = parse_ok(kFile);
  auto plan = compile(cfg, {});
  ASSERT_TRUE(plan) << plan.error().message();
  auto m = plan_maps(cfg, *plan, host_facts(), {});
  ASSERT_TRUE(m) << m.error().message();
  // Endpoints keyed by ifindex, carrying their counter slot.
  ASSERT_EQ(m->endpoints.size(), 2u);
  const auto& web = m->endpoints.at(key_bytes(uint32_t{11}));
  EXPECT_EQ(web.ipv4, inet_addr("10.1.0.2"));
  EXPECT_EQ(web.stats_slot, m->slots.slot.at("veth0"));
  EXPECT_NE(web.stats_slot, 0u);
  // The container's MAC: from the host (the veth's peer), or from the file.
  EXPECT_EQ(mac_str(std::to_array(web.mac)), "02:42:0a:01:00:02");
  const auto& db = m->endpoints.at(key_bytes(uint32_t{12}));
  EXPECT_EQ(mac_str(std::to_array(db.mac)), "02:42:0a:01:00:03");
  EXPECT_EQ(m->endpoint_rows.at(1).state_row().value("mac", ""), "02:42:0a:01:00:03");
  // Subnet, gateway, and the uplink's address as a host address.
  ASSERT_EQ(m->addrs.size(), 3u);
  auto up = m->addrs.at(key_bytes(moat_lpm_v4_key{32, inet_addr("198.18.0.1")}));
  EXPECT_EQ(up.kind, MOAT_ADDR_HOST);
  ASSERT_EQ(m->uplinks.size(), 1u);
  EXPECT_EQ(m->uplinks.at(key_bytes(uint32_t{2})).ipv4, inet_addr("198.18.0.1"));
  EXPECT_EQ(m->publish.size(), 1u);
  EXPECT_EQ(m->container_addrs.size(), 2u);
  // Attachment rows as the state file keeps them.
  ASSERT_EQ(m->endpoint_rows.size(), 2u);
  EXPECT_EQ(m->endpoint_rows[0].name, "veth0");
  EXPECT_EQ(m->endpoint_rows[0].ifindex, 11);
  EXPECT_EQ(m->endpoint_rows[0].state_row()["container"], "web");
  EXPECT_EQ(m->endpoint_rows[0].state_row()["ip"], "10.1.0.2");
  ASSERT_EQ(m->uplink_rows.size(), 1u);
  EXPECT_EQ(m->uplink_rows[0].state_row()["ip"], "198.18.0.1");
  // Three attachments, three distinct fresh slots.
  EXPECT_EQ(m->slots.fresh.size(), 3u);
  EXPECT_FALSE(m->policy.active);
}

TEST(MapPlan, KeepsSlotsOfUnchangedInterfaces) {
  Config cfg = parse_ok(kFile);
  auto plan = compile(cfg, {});
  ASSERT_TRUE(plan);
  // veth0 keeps slot 7; veth1 was re-created (another ifindex): a fresh slot.
  auto m = plan_maps(cfg, *plan, host_facts(), {{"veth0", 11, 7}, {"veth1", 99, 8}});
  ASSERT_TRUE(m) << m.error().message();
  EXPECT_EQ(m->endpoints.at(key_bytes(uint32_t{11})).stats_slot, 7u);
  EXPECT_NE(m->slots.slot.at("veth1"), 8u);
  EXPECT_EQ(m->slots.freed, std::vector<uint32_t>{8});
}

TEST(MapPlan, PolicyUsesUplinkAddressesAsHost) {
  std::string text = kFile;
  text.insert(text.rfind('}'),
              R"(, "policies": [{"name": "p", "podSelector": {"matchLabels": {"app": "web"}},
                    "ingress": [{"from": [{"host": true}]}]}])");
  Config cfg = parse_ok(text);
  auto plan = compile(cfg, {});
  ASSERT_TRUE(plan);
  auto m = plan_maps(cfg, *plan, host_facts(), {});
  ASSERT_TRUE(m) << m.error().message();
  ASSERT_TRUE(m->policy.active);
  bool uplink_is_host = false;
  for (const auto& [k, v] : m->policy.ipcache)
    if (k.prefixlen == 32 && k.addr == inet_addr("198.18.0.1")) uplink_is_host = v.identity == MOAT_ID_HOST;
  EXPECT_TRUE(uplink_is_host);
}

TEST(Inputs, PolicyFilesMergeAndReplace) {
  Inputs in{{{"main.json", kFile},
             {"p.yaml", "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n"
                        "  name: deny\nspec:\n  podSelector: {}\n  policyTypes: [Ingress]\n"}},
            false};
  auto loaded = load_inputs(in);
  ASSERT_TRUE(loaded.config) << problems_message(loaded.problems, loaded.file);
  EXPECT_EQ(loaded.config->policies.size(), 1u);
  // Round trip through what the instance keeps.
  std::string why;
  auto back = inputs_from_json(inputs_json(in), &why);
  ASSERT_TRUE(back) << why;
  EXPECT_EQ(back->files.size(), 2u);
  EXPECT_EQ(back->files[1].text, in.files[1].text);
  EXPECT_FALSE(inputs_from_json(nlohmann::json::object(), &why));
}

TEST(Inputs, ProblemsNameTheirFile) {
  Inputs in{{{"main.json", kFile}, {"bad.json", R"({"kind": "NetworkPolicy"})"}}, false};
  auto loaded = load_inputs(in);
  EXPECT_FALSE(loaded.config);
  EXPECT_EQ(loaded.file, "bad.json");
  ASSERT_FALSE(loaded.problems.empty());
  std::string msg = problems_message(loaded.problems, loaded.file);
  EXPECT_NE(msg.find("in bad.json; nothing was applied"), std::string::npos) << msg;
}

// A second process must wait for the first to release the lock: the child
// takes it, holds it 300 ms; the parent's acquire returns only after that.
TEST(InstanceLock, SerialisesProcessesAndLeavesNothing) {
  auto dir = std::filesystem::temp_directory_path() / ("moat-lock-" + std::to_string(getpid()));
  std::string path = (dir / "i.lock").string();
  int ready[2];
  ASSERT_EQ(pipe(ready), 0);
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    auto lock = InstanceLock::acquire_at(path);
    char c = lock ? 'y' : 'n';
    (void)!write(ready[1], &c, 1);
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    _exit(lock ? 0 : 1);
  }
  char c = 0;
  ASSERT_EQ(read(ready[0], &c, 1), 1);
  ASSERT_EQ(c, 'y');
  auto t0 = std::chrono::steady_clock::now();
  {
    auto busy = InstanceLock::acquire_at(path, false);  // not waiting: refused at once
    ASSERT_FALSE(busy);
    EXPECT_EQ(busy.error().err, EWOULDBLOCK);
    EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(200));
  }
  {
    auto lock = InstanceLock::acquire_at(path);
    ASSERT_TRUE(lock) << lock.error().message();
    auto waited = std::chrono::steady_clock::now() - t0;
    EXPECT_GE(waited, std::chrono::milliseconds(200));
    EXPECT_TRUE(lock->waited());  // what the holder did meanwhile is unknown
  }
  {
    auto lock = InstanceLock::acquire_at(path);
    ASSERT_TRUE(lock) << lock.error().message();
    EXPECT_FALSE(lock->waited());
  }
  int status = 0;
  waitpid(child, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  close(ready[0]);
  close(ready[1]);
  EXPECT_FALSE(std::filesystem::exists(path));
  EXPECT_FALSE(std::filesystem::exists(dir));
}

// Whether another holder could take the lock on `path` now (a second open
// file description conflicts with ours as another process's would).
bool lock_free(const std::string& path) {
  Fd fd(open(path.c_str(), O_RDWR | O_CLOEXEC));
  if (!fd.ok()) return false;
  if (flock(fd.get(), LOCK_EX | LOCK_NB) != 0) return false;
  flock(fd.get(), LOCK_UN);
  return true;
}

// The Docker agent keeps its lock file between syncs: released, it is
// unlocked but stays; locked again, it is the same file; removed by
// another holder meanwhile, a new one is made; the keeping turned off, it
// goes, and so does its directory.
TEST(InstanceLock, KeptBetweenLocksThenRemoved) {
  auto dir = std::filesystem::temp_directory_path() / ("moat-klock-" + std::to_string(getpid()));
  std::string path = (dir / "i.lock").string();
  keep_instance_locks(true);
  struct Off {  // a failed ASSERT must not leave the next test keeping locks
    ~Off() { keep_instance_locks(false); }
  } off;
  ino_t first = 0;
  {
    auto lock = InstanceLock::acquire_at(path);
    ASSERT_TRUE(lock) << lock.error().message();
    EXPECT_FALSE(lock_free(path));
    struct stat st {};
    ASSERT_EQ(stat(path.c_str(), &st), 0);
    first = st.st_ino;
  }
  ASSERT_TRUE(std::filesystem::exists(path));
  EXPECT_TRUE(lock_free(path));
  {
    auto lock = InstanceLock::acquire_at(path);
    ASSERT_TRUE(lock) << lock.error().message();
    EXPECT_FALSE(lock_free(path));
    struct stat st {};
    ASSERT_EQ(stat(path.c_str(), &st), 0);
    EXPECT_EQ(st.st_ino, first);
    EXPECT_FALSE(lock->waited());
  }
  // Another process's release removes the file it locked.
  ASSERT_EQ(unlink(path.c_str()), 0);
  {
    auto lock = InstanceLock::acquire_at(path);
    ASSERT_TRUE(lock) << lock.error().message();
    ASSERT_TRUE(std::filesystem::exists(path));
    EXPECT_FALSE(lock_free(path));  // the new file is the one held
    EXPECT_TRUE(lock->waited());    // another writer was here since
  }
  EXPECT_TRUE(lock_free(path));
  keep_instance_locks(false);
  EXPECT_FALSE(std::filesystem::exists(path));
  EXPECT_FALSE(std::filesystem::exists(dir));
}

// The Docker agent hands reconcile() the indexes of the veths it found just
// before; any other name is asked of the kernel (the loopback is 1 in
// every network namespace).
TEST(InterfaceIndexes, KnownNamesFirstThenTheKernel) {
  KnownIndexes known = {{"moat-none-0", 42}};
  InterfaceIndexes index_of(&known);
  EXPECT_EQ(index_of("moat-none-0"), 42u);
  EXPECT_EQ(index_of("moat-none-1"), 0u);
  EXPECT_EQ(index_of("lo"), 1u);
  EXPECT_EQ(InterfaceIndexes()("moat-none-0"), 0u);
  EXPECT_FALSE(index_of.ipv4("moat-none-1"));
}

// The crash tests (e2e test_crash_recovery) rely on a failure injected at a
// point firing once: the failed apply then undoes itself through the same
// points, which must not fail again.
TEST(Failpoint, FailsOnceAtItsPointAndNowhereElse) {
  setenv("MOAT_FAIL_AT", "write", 1);
  EXPECT_TRUE(failpoint("pin"));
  auto r = failpoint("write");
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("failing at write"), std::string::npos);
  EXPECT_TRUE(failpoint("write"));
  EXPECT_EQ(getenv("MOAT_FAIL_AT"), nullptr);
}

}  // namespace
}  // namespace moat
