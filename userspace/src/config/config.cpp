// config.cpp - reading, validating and resolving a moat file.
//
// Three passes. parse_json() checks the syntax; a syntax error ends the run
// since nothing after it means anything. read_document() walks the tree into
// entries that remember where each value was written, checking everything
// that concerns a single value (types, keys, names, CIDRs, port syntax).
// Resolver then checks what spans entries (unique names, references, subnet
// overlaps, address and port collisions) and runs Docker's IPAM. Every pass
// collects problems instead of stopping, and they are sorted into document
// order at the end, so a user fixes the whole file in one round trip.
#include "config/config.h"

#include "policy/read.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <expected>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string_view>
#include <utility>

namespace moat {
namespace {

// ordered_json keeps keys in document order, which problems are reported in.
using Json = nlohmann::ordered_json;

constexpr size_t kMaxNameLength = 63;     // Docker's and DNS's label limit
constexpr size_t kMaxIfnameLength = 15;   // IFNAMSIZ - 1
constexpr int kLongestSubnetPrefix = 30;  // room for a gateway and one container

// ---------------------------------------------------------------------------
// Text helpers

std::string quote(std::string_view s) {
  return Json(std::string(s)).dump(-1, ' ', false, Json::error_handler_t::replace);
}

bool is_identifier(std::string_view key) {
  if (key.empty() || std::isdigit(static_cast<unsigned char>(key[0]))) return false;
  return std::all_of(key.begin(), key.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '$';
  });
}

// `containers[0].labels.app`, or `containers[0].labels["app.kubernetes.io/name"]` when the
// key would make the path ambiguous.
std::string key_path(const std::string& path, std::string_view key) {
  if (!is_identifier(key)) return path + "[" + quote(key) + "]";
  return path.empty() ? std::string(key) : path + "." + std::string(key);
}

std::string index_path(const std::string& path, size_t index) {
  return path + "[" + std::to_string(index) + "]";
}

// The path one level up; "" above a top-level key.
std::string parent_path(const std::string& path) {
  size_t cut = path.find_last_of(".[");
  return cut == std::string::npos ? "" : path.substr(0, cut);
}

std::string describe(const Json& v) {
  switch (v.type()) {
    case Json::value_t::string:
      return "the string " + v.dump();
    case Json::value_t::object:
      return "an object";
    case Json::value_t::array:
      return "an array";
    case Json::value_t::null:
      return "null";
    case Json::value_t::boolean:
      return v.dump();
    default:
      return "the number " + v.dump();
  }
}

std::string did_you_mean(const std::string& word, const std::vector<std::string>& candidates) {
  std::string best = closest_match(word, candidates);
  return best.empty() ? "" : " (did you mean " + quote(best) + "?)";
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// Optimal string alignment distance: Levenshtein plus adjacent transpositions,
// the most common typo ("netwroks").
size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::vector<size_t>> d(a.size() + 1, std::vector<size_t>(b.size() + 1));
  for (size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
  for (size_t j = 0; j <= b.size(); ++j) d[0][j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) {
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
      }
    }
  }
  return d[a.size()][b.size()];
}

// ---------------------------------------------------------------------------
// Problems, sorted into document order at the end

class Problems {
 public:
  // Records the first time a path is met. The reader meets the keys of an
  // object and the elements of an array in document order (though not always
  // children before cousins), so a path's place in the document is the visit
  // order of its ancestors, compared from the root down.
  void visit(const std::string& path) { order_.emplace(path, order_.size()); }

  void add(Problem problem) { list_.push_back(std::move(problem)); }
  void add(std::string path, std::string message) {
    add(Problem{std::move(path), std::move(message)});
  }

  bool empty() const { return list_.empty(); }

  std::vector<Problem> in_document_order() && {
    std::vector<std::pair<std::vector<size_t>, Problem>> placed;
    for (Problem& p : list_) placed.emplace_back(position(p.path), std::move(p));
    std::stable_sort(placed.begin(), placed.end(),
                     [](const auto& a, const auto& b) { return a.first < b.first; });
    std::vector<Problem> sorted;
    for (auto& [position, p] : placed) sorted.push_back(std::move(p));
    return sorted;
  }

 private:
  // Visit numbers of the path and its ancestors, root first. Paths nobody
  // visited (a duplicate key's, say) are left out: they sort with the parent.
  std::vector<size_t> position(std::string path) const {
    std::vector<size_t> chain;
    for (;;) {
      if (auto it = order_.find(path); it != order_.end()) chain.push_back(it->second);
      if (path.empty()) break;
      path = parent_path(path);
    }
    std::reverse(chain.begin(), chain.end());
    return chain;
  }

  std::map<std::string, size_t> order_;
  std::vector<Problem> list_;
};

// ---------------------------------------------------------------------------
// Pass 1: JSON syntax

// nlohmann keeps the last of duplicate keys without a word, and the parsed
// tree no longer shows them. A SAX pass of its own sees every key: a parser
// callback would too, but nlohmann's callback parser rescans the enclosing
// container at every object's end, quadratic in a 100,000-rule policy.
class DuplicateKeyFinder {
 public:
  using number_integer_t = Json::number_integer_t;
  using number_unsigned_t = Json::number_unsigned_t;
  using number_float_t = Json::number_float_t;
  using string_t = Json::string_t;
  using binary_t = Json::binary_t;

  bool null() { return value(); }
  bool boolean(bool) { return value(); }
  bool number_integer(number_integer_t) { return value(); }
  bool number_unsigned(number_unsigned_t) { return value(); }
  bool number_float(number_float_t, const string_t&) { return value(); }
  bool string(string_t&) { return value(); }
  bool binary(binary_t&) { return value(); }
  bool start_object(std::size_t) { return open(false); }
  bool start_array(std::size_t) { return open(true); }
  bool end_object() { return close(); }
  bool end_array() { return close(); }
  bool key(string_t& k) {
    Frame& top = stack_.back();
    top.key = k;
    if (!top.keys.insert(top.key).second)
      found_.push_back(Problem{key_path(top.path, top.key), "duplicate key " + quote(top.key)});
    return true;
  }
  // The DOM parse that follows reports syntax errors, with their position.
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception&) {
    return false;
  }

  std::vector<Problem>& found() { return found_; }

 private:
  struct Frame {
    std::string path;
    bool is_array = false;
    size_t next_index = 0;
    std::string key{};  // the object's current key
    std::set<std::string> keys{};
  };

  bool value() {
    next_child_path();
    return true;
  }
  bool open(bool is_array) {
    stack_.push_back(Frame{next_child_path(), is_array});
    return true;
  }
  bool close() {
    stack_.pop_back();
    return true;
  }

  // The path of the value that starts now; advances the index in arrays.
  std::string next_child_path() {
    if (stack_.empty()) return "";
    Frame& top = stack_.back();
    return top.is_array ? index_path(top.path, top.next_index++) : key_path(top.path, top.key);
  }

  std::vector<Frame> stack_;
  std::vector<Problem> found_;
};

// 1-based line and column (in UTF-8 characters, as editors count) of the byte at `offset`.
std::pair<int, int> line_column(std::string_view text, size_t offset) {
  offset = std::min(offset, text.size());
  int line = 1, column = 1;
  for (size_t i = 0; i < offset; ++i) {
    if (text[i] == '\n') {
      ++line;
      column = 1;
    } else if ((static_cast<unsigned char>(text[i]) & 0xC0) != 0x80) {
      ++column;
    }
  }
  return {line, column};
}

// "[json.exception.parse_error.101] parse error at line 3, column 1: syntax
// error while parsing object key - unexpected '}'; expected string literal"
// becomes "unexpected '}'; expected string literal": the position is given
// separately, and the rest is about nlohmann's internals.
std::string readable_json_error(const std::string& what) {
  if (size_t dash = what.find(" - "); dash != std::string::npos) return what.substr(dash + 3);
  if (size_t bracket = what.find("] "); bracket != std::string::npos) {
    return what.substr(bracket + 2);
  }
  return what;
}

std::optional<Json> parse_json(const std::string& text, Problems& problems) {
  DuplicateKeyFinder finder;
  try {
    Json root = Json::parse(text);
    Json::sax_parse(text, &finder);
    for (Problem& p : finder.found()) problems.add(std::move(p));
    return root;
  } catch (const Json::parse_error& e) {
    // e.byte counts the offending character itself.
    auto [line, column] = line_column(text, e.byte > 0 ? e.byte - 1 : 0);
    problems.add(Problem{"", "invalid JSON: " + readable_json_error(e.what()), line, column});
  } catch (const Json::exception& e) {  // e.g. a number too large for a double
    problems.add("", "invalid JSON: " + readable_json_error(e.what()));
  }
  return std::nullopt;
}

// ---------------------------------------------------------------------------
// Values: pure parsers returning the value or a message

struct PortRange {
  uint16_t first = 0;
  uint16_t count = 1;

  std::string str() const {
    std::string s = std::to_string(first);
    return count == 1 ? s : s + "-" + std::to_string(first + count - 1);
  }
};

template <class T>
using Parsed = std::expected<T, std::string>;

Parsed<uint16_t> parse_port(std::string_view text) {
  if (text.empty()) return std::unexpected("a port number is missing");
  if (!std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return std::unexpected(quote(text) + " is not a port number");
  }
  uint32_t value = 0;  // stays 0 for more than five digits, which are out of range as well
  if (text.size() <= 5) std::from_chars(text.data(), text.data() + text.size(), value);
  if (value == 0 || value > 65535) {
    return std::unexpected("port " + std::string(text) + " is out of range 1-65535");
  }
  return static_cast<uint16_t>(value);
}

// "80" or "8000-8010".
Parsed<PortRange> parse_port_range(std::string_view text) {
  size_t dash = text.find('-', 1);  // from 1: "-1" is a bad port, not a range
  auto first = parse_port(text.substr(0, dash));
  if (!first) return std::unexpected(first.error());
  if (dash == std::string_view::npos) return PortRange{*first, 1};
  auto last = parse_port(text.substr(dash + 1));
  if (!last) return std::unexpected(last.error());
  if (*last < *first)
    return std::unexpected("port range " + quote(text) + " ends before it starts");
  return PortRange{*first, static_cast<uint16_t>(*last - *first + 1)};
}

const std::vector<std::string>& protocol_names() {
  static const std::vector<std::string> names = {"tcp", "udp", "sctp"};  // Protocol's order
  return names;
}

Parsed<Protocol> parse_protocol(std::string_view text) {
  const auto& names = protocol_names();
  for (size_t i = 0; i < names.size(); ++i) {
    if (text == names[i]) return static_cast<Protocol>(i);
  }
  // No closest_match() here: with three short names it suggests "tcp" for "icmp".
  return std::unexpected("unknown protocol " + quote(text) + " (use tcp, udp or sctp)");
}

// Splits "80/udp" into "80" and udp; no suffix means tcp, as in Docker.
Parsed<std::pair<std::string_view, Protocol>> split_protocol(std::string_view text) {
  size_t slash = text.rfind('/');
  if (slash == std::string_view::npos) return std::pair{text, Protocol::tcp};
  auto protocol = parse_protocol(text.substr(slash + 1));
  if (!protocol) return std::unexpected(protocol.error());
  return std::pair{text.substr(0, slash), *protocol};
}

std::string render_publish(const Publish& p) {
  std::string ip = p.host_ip ? p.host_ip->str() + ":" : "";
  return ip + PortRange{p.host_port, p.count}.str() + ":" +
         PortRange{p.container_port, p.count}.str() + "/" + to_string(p.protocol);
}

Parsed<Publish> make_publish(std::optional<Ipv4> host_ip, PortRange host, PortRange container,
                             Protocol protocol) {
  if (host.count != container.count) {
    return std::unexpected("host ports " + host.str() + " and container ports " + container.str() +
                           " must be ranges of the same length (" + std::to_string(host.count) +
                           " and " + std::to_string(container.count) + " ports)");
  }
  // SCTP's CRC32c covers the ports: moat would have to recompute it over the
  // whole packet for every rewrite, so it only moves SCTP to another address.
  if (protocol == Protocol::sctp && host.first != container.first) {
    return std::unexpected("SCTP ports cannot be changed (the SCTP checksum covers them): use " +
                           host.str() + ":" + host.str() + "/sctp");
  }
  // 0.0.0.0 is how Docker spells "every host address".
  if (host_ip && host_ip->value == 0) host_ip.reset();
  return Publish{host_ip, host.first, container.first, host.count, protocol, ""};
}

std::vector<std::string_view> split(std::string_view text, char separator) {
  std::vector<std::string_view> parts;
  for (;;) {
    size_t at = text.find(separator);
    parts.push_back(text.substr(0, at));
    if (at == std::string_view::npos) return parts;
    text.remove_prefix(at + 1);
  }
}

// Docker's `-p [ip:]host:container[/proto]`.
Parsed<Publish> parse_publish(std::string_view text) {
  auto ports_protocol = split_protocol(text);
  if (!ports_protocol) return std::unexpected(ports_protocol.error());
  auto [ports, protocol] = *ports_protocol;
  std::vector<std::string_view> parts = split(ports, ':');
  if (parts.size() == 1) {
    // Docker would pick a random host port; a policy needs to know it.
    return std::unexpected("the host port is missing; write host:container, e.g. \"8080:80\"");
  }
  if (parts.size() > 3) {
    return std::unexpected("expected [ip:]host:container[/protocol], e.g. \"127.0.0.1:8080:80\"");
  }
  std::optional<Ipv4> host_ip;
  if (parts.size() == 3) {
    host_ip = Ipv4::parse(parts[0]);
    if (!host_ip) return std::unexpected(quote(parts[0]) + " is not an IPv4 address");
  }
  auto host = parse_port_range(parts[parts.size() - 2]);
  if (!host) return std::unexpected(host.error());
  auto container = parse_port_range(parts.back());
  if (!container) return std::unexpected(container.error());
  auto publish = make_publish(host_ip, *host, *container, protocol);
  if (publish) publish->text = std::string(text);
  return publish;
}

// "6000", "6000/tcp", "53/udp".
Parsed<Expose> parse_expose(std::string_view text) {
  auto port_protocol = split_protocol(text);
  if (!port_protocol) return std::unexpected(port_protocol.error());
  auto port = parse_port(port_protocol->first);
  if (!port) return std::unexpected(port.error());
  return Expose{*port, port_protocol->second};
}

using NameCheck = std::optional<std::string> (*)(std::string_view);

std::optional<std::string> length_problem(std::string_view name, size_t max) {
  if (name.empty()) return "it is empty";
  if (name.size() > max) {
    return "it has " + std::to_string(name.size()) + " characters; the limit is " +
           std::to_string(max);
  }
  return std::nullopt;
}

bool is_alnum(char c) { return std::isalnum(static_cast<unsigned char>(c)); }

// Docker's rule for container and network names.
std::optional<std::string> docker_name_problem(std::string_view name) {
  if (auto why = length_problem(name, kMaxNameLength)) return why;
  bool ok = is_alnum(name[0]) && std::all_of(name.begin(), name.end(), [](char c) {
              return is_alnum(c) || c == '_' || c == '.' || c == '-';
            });
  if (!ok) return "use letters, digits, '_', '.' and '-', starting with a letter or digit";
  return std::nullopt;
}

// Kubernetes' rule for namespaces (an RFC 1123 DNS label).
std::optional<std::string> dns_label_problem(std::string_view name) {
  if (auto why = length_problem(name, kMaxNameLength)) return why;
  bool ok = name.front() != '-' && name.back() != '-' &&
            std::all_of(name.begin(), name.end(), [](char c) {
              return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
            });
  if (!ok)
    return "use lowercase letters, digits and '-', starting and ending with a letter or digit";
  return std::nullopt;
}

// The kernel's dev_valid_name().
std::optional<std::string> ifname_problem(std::string_view name) {
  if (auto why = length_problem(name, kMaxIfnameLength)) return why;
  bool ok = name != "." && name != ".." && std::none_of(name.begin(), name.end(), [](char c) {
              return c == '/' || c == ':' || std::isspace(static_cast<unsigned char>(c));
            });
  if (!ok) return "it must not be \".\" or \"..\" nor contain '/', ':' or whitespace";
  return std::nullopt;
}

// Why `ip` cannot be a host in `subnet`, if it cannot.
std::optional<std::string> host_address_problem(Ipv4 ip, const Ipv4Prefix& subnet) {
  if (!subnet.contains(ip)) return "is outside subnet " + subnet.str();
  if (ip == subnet.addr) return "is the network address of subnet " + subnet.str();
  if (ip == subnet.broadcast()) return "is the broadcast address of subnet " + subnet.str();
  return std::nullopt;
}

// ---------------------------------------------------------------------------
// Pass 2: reading the document into entries that remember their paths

std::string entry_label(std::string_view kind, const std::string& name, const std::string& path) {
  if (name.empty()) return "the " + std::string(kind) + " at " + path;
  return std::string(kind) + " " + quote(name);
}

struct NetworkEntry {
  struct Owner {
    std::string container;  // entry_label() of the container
    std::string path;       // where the address was written or allocated
  };

  Network net{};
  std::string path;
  bool subnet_given = false;  // the file has a valid CIDR (which may still be too small)
  bool addressing_ok = true;  // subnet and gateway are usable for address checks and IPAM
  bool gateway_given = false;
  std::map<uint32_t, Owner> owners{};  // addresses of containers
  uint64_t next_free = 0;              // IPAM cursor: no lower address is free

  const std::string& name() const { return net.name; }
  std::string label() const { return entry_label("network", net.name, path); }
};

struct AttachmentEntry {
  Attachment att{};
  std::string path;
  std::string network_path{};  // where the network's name was written
  std::string ip_path{};
  bool ip_ok = true;  // false when the written address is unusable
  int network = -1;   // index into Document::networks once resolved
};

struct PublishEntry {
  Publish pub;
  std::string path;
};

struct ContainerEntry {
  Container c{};  // networks and publish are filled from the entries below at the end
  std::string path;
  std::vector<AttachmentEntry> attachments{};
  std::vector<PublishEntry> publishes{};

  const std::string& name() const { return c.name; }
  std::string label() const { return entry_label("container", c.name, path); }
};

struct Document {
  std::vector<NetworkEntry> networks;
  std::vector<ContainerEntry> containers;
  std::vector<std::string> uplinks;
  std::vector<NamespaceDef> namespaces;
  std::vector<Policy> policies;
};

struct Field {
  const char* name;
  bool required = false;
};
constexpr bool kRequired = true;

// Typed access to the JSON tree; each accessor reports what is wrong at the
// given path and returns nothing, so callers just skip the value.
class Reader {
 public:
  explicit Reader(Problems& problems) : problems_(problems) {}

  void visit(const std::string& path) { problems_.visit(path); }
  void problem(std::string path, std::string message) {
    problems_.add(std::move(path), std::move(message));
  }

  template <class T>
  std::optional<T> check(Parsed<T> parsed, const std::string& path, const std::string& context) {
    if (parsed) return std::move(*parsed);
    problem(path, context + parsed.error());
    return std::nullopt;
  }

  // Whether `v` is an object; reports unknown keys (with the closest known
  // one) and missing required keys.
  bool object(const Json& v, const std::string& path, std::initializer_list<Field> fields) {
    if (!v.is_object()) {
      problem(path, "must be an object, not " + describe(v));
      return false;
    }
    std::vector<std::string> known;
    for (const Field& f : fields) known.emplace_back(f.name);
    for (auto it = v.begin(); it != v.end(); ++it) {
      visit(key_path(path, it.key()));
      if (std::find(known.begin(), known.end(), it.key()) == known.end()) {
        problem(path, "unknown key " + quote(it.key()) + did_you_mean(it.key(), known));
      }
    }
    for (const Field& f : fields) {
      if (f.required && !v.contains(f.name)) problem(path, "missing required key " + quote(f.name));
    }
    return true;
  }

  // Calls read(value, path) for the member `key` of `object` if it is there.
  template <class Read>
  void member(const Json& object, const std::string& path, const char* key, Read read) {
    if (auto it = object.find(key); it != object.end()) read(*it, key_path(path, key));
  }

  // Calls read(element, path) for each element of the array `v`.
  template <class Read>
  void elements(const Json& v, const std::string& path, std::string_view what, Read read) {
    if (!v.is_array()) {
      problem(path, "must be an array of " + std::string(what) + ", not " + describe(v));
      return;
    }
    for (size_t i = 0; i < v.size(); ++i) {
      std::string element_path = index_path(path, i);
      visit(element_path);
      read(v[i], element_path);
    }
  }

  std::optional<std::string> string(const Json& v, const std::string& path) {
    if (v.is_string()) return v.get<std::string>();
    problem(path, "must be a string, not " + describe(v));
    return std::nullopt;
  }

  void boolean(const Json& object, const std::string& path, const char* key, bool& out) {
    member(object, path, key, [&](const Json& v, const std::string& p) {
      if (v.is_boolean()) {
        out = v.get<bool>();
      } else {
        problem(p, "must be true or false, not " + describe(v));
      }
    });
  }

  // A string checked by `check`. A badly formed name is still returned, so
  // that references to it do not report it a second time as unknown.
  std::optional<std::string> name(const Json& v, const std::string& path, std::string_view kind,
                                  NameCheck check) {
    auto name = string(v, path);
    if (!name) return std::nullopt;
    if (auto why = check(*name)) {
      problem(path, "invalid " + std::string(kind) + " name " + quote(*name) + ": " + *why);
    }
    return name;
  }

  std::optional<Ipv4> ip(const Json& v, const std::string& path) {
    auto text = string(v, path);
    if (!text) return std::nullopt;
    if (auto ip = Ipv4::parse(*text)) return ip;
    bool cidr = text->find('/') != std::string::npos;
    problem(path, "invalid IPv4 address " + quote(*text) +
                      (cidr ? " (write the address without a prefix length)" : ""));
    return std::nullopt;
  }

  // Ports are written as JSON numbers or as strings.
  std::optional<std::string> port_text(const Json& v, const std::string& path,
                                       std::string_view expected) {
    if (v.is_string()) return v.get<std::string>();
    if (v.is_number_integer()) return v.dump();
    problem(path, "must be " + std::string(expected) + ", not " + describe(v));
    return std::nullopt;
  }

 private:
  Problems& problems_;
};

NetworkEntry read_network(Reader& r, const Json& v, const std::string& path) {
  NetworkEntry e{.path = path};
  if (!r.object(
          v, path,
          {{"name", kRequired}, {"subnet"}, {"gateway"}, {"icc"}, {"internal"}, {"masquerade"}})) {
    e.addressing_ok = false;
    return e;
  }
  r.member(v, path, "name", [&](const Json& f, const std::string& p) {
    e.net.name = r.name(f, p, "network", docker_name_problem).value_or("");
  });
  r.member(v, path, "subnet", [&](const Json& f, const std::string& p) {
    e.addressing_ok = false;  // until proven usable
    auto text = r.string(f, p);
    if (!text) return;
    std::string why;
    auto subnet = Ipv4Prefix::parse(*text, &why);
    if (!subnet) return r.problem(p, "invalid subnet " + quote(*text) + ": " + why);
    e.net.subnet = *subnet;
    e.subnet_given = true;
    if (subnet->len > kLongestSubnetPrefix) {
      return r.problem(p, "subnet " + subnet->str() + " is too small: a network needs /" +
                              std::to_string(kLongestSubnetPrefix) +
                              " or shorter to hold a gateway and a container");
    }
    e.addressing_ok = true;
  });
  r.member(v, path, "gateway", [&](const Json& f, const std::string& p) {
    auto gateway = r.ip(f, p);
    if (!gateway) {
      e.addressing_ok = false;
      return;
    }
    e.net.gateway = *gateway;
    e.gateway_given = true;
    if (!v.contains("subnet")) {
      e.addressing_ok = false;
      return r.problem(p, "a gateway needs an explicit \"subnet\"");
    }
    if (!e.addressing_ok) return;  // the subnet's problem is reported
    if (auto why = host_address_problem(*gateway, e.net.subnet)) {
      e.addressing_ok = false;
      r.problem(p, "gateway " + gateway->str() + " " + *why);
    }
  });
  r.boolean(v, path, "icc", e.net.icc);
  r.boolean(v, path, "internal", e.net.internal);
  r.boolean(v, path, "masquerade", e.net.masquerade);
  return e;
}

void read_labels(Reader& r, const Json& v, const std::string& path,
                 std::map<std::string, std::string>& labels) {
  if (!v.is_object()) return r.problem(path, "must be an object of strings, not " + describe(v));
  for (auto it = v.begin(); it != v.end(); ++it) {
    std::string label_path = key_path(path, it.key());
    r.visit(label_path);
    if (it.key().empty()) r.problem(label_path, "a label key must not be empty");
    if (auto value = r.string(it.value(), label_path)) labels[it.key()] = *value;
  }
}

std::optional<AttachmentEntry> read_attachment(Reader& r, const Json& v, const std::string& path) {
  AttachmentEntry a{.path = path};
  if (v.is_string()) {  // "backend" is short for {"network": "backend"}
    a.att.network = v.get<std::string>();
    a.network_path = path;
    return a;
  }
  if (!v.is_object()) {
    r.problem(path, "must be a network name or an object like {\"network\": \"backend\"}, not " +
                        describe(v));
    return std::nullopt;
  }
  if (!r.object(v, path, {{"network", kRequired}, {"ip"}, {"interface"}})) return std::nullopt;
  bool has_network = false;
  r.member(v, path, "network", [&](const Json& f, const std::string& p) {
    a.network_path = p;
    if (auto name = r.string(f, p)) {
      a.att.network = *name;
      has_network = true;
    }
  });
  r.member(v, path, "ip", [&](const Json& f, const std::string& p) {
    a.ip_path = p;
    a.att.ip_from_file = true;
    auto ip = r.ip(f, p);
    a.ip_ok = ip.has_value();
    a.att.ip = ip.value_or(Ipv4{});
  });
  r.member(v, path, "interface", [&](const Json& f, const std::string& p) {
    a.att.host_interface = r.name(f, p, "interface", ifname_problem).value_or("");
  });
  if (!has_network) return std::nullopt;
  return a;
}

std::optional<Publish> read_publish_object(Reader& r, const Json& v, const std::string& path) {
  if (!r.object(
          v, path,
          {{"host_ip"}, {"host_port", kRequired}, {"container_port", kRequired}, {"protocol"}})) {
    return std::nullopt;
  }
  std::optional<Ipv4> host_ip;
  std::optional<PortRange> host, container;
  std::optional<Protocol> protocol = Protocol::tcp;
  bool host_ip_ok = true;
  auto read_range = [&r](std::optional<PortRange>& out) {
    return [&r, &out](const Json& f, const std::string& p) {
      if (auto text = r.port_text(f, p, "a port number or a range like \"8000-8010\"")) {
        out = r.check(parse_port_range(*text), p, "");
      }
    };
  };
  r.member(v, path, "host_ip", [&](const Json& f, const std::string& p) {
    host_ip = r.ip(f, p);
    host_ip_ok = host_ip.has_value();
  });
  r.member(v, path, "host_port", read_range(host));
  r.member(v, path, "container_port", read_range(container));
  r.member(v, path, "protocol", [&](const Json& f, const std::string& p) {
    auto text = r.string(f, p);
    protocol = text ? r.check(parse_protocol(*text), p, "") : std::nullopt;
  });
  if (!host_ip_ok || !host || !container || !protocol) return std::nullopt;
  auto publish = r.check(make_publish(host_ip, *host, *container, *protocol), path, "");
  if (publish) publish->text = render_publish(*publish);
  return publish;
}

std::optional<Publish> read_publish(Reader& r, const Json& v, const std::string& path) {
  if (v.is_object()) return read_publish_object(r, v, path);
  if (!v.is_string()) {
    r.problem(path, "must be a string like \"8080:80/tcp\" or an object, not " + describe(v));
    return std::nullopt;
  }
  const auto& text = v.get_ref<const std::string&>();
  return r.check(parse_publish(text), path, "invalid port mapping " + quote(text) + ": ");
}

std::optional<Expose> read_expose(Reader& r, const Json& v, const std::string& path) {
  auto text = r.port_text(v, path, "a port like \"6000/tcp\" or a number");
  if (!text) return std::nullopt;
  return r.check(parse_expose(*text), path, "invalid exposed port " + quote(*text) + ": ");
}

ContainerEntry read_container(Reader& r, const Json& v, const std::string& path) {
  ContainerEntry e{.path = path};
  if (!r.object(v, path,
                {{"name", kRequired},
                 {"namespace"},
                 {"labels"},
                 {"networks"},
                 {"publish"},
                 {"expose"}})) {
    return e;
  }
  r.member(v, path, "name", [&](const Json& f, const std::string& p) {
    e.c.name = r.name(f, p, "container", docker_name_problem).value_or("");
  });
  r.member(v, path, "namespace", [&](const Json& f, const std::string& p) {
    e.c.ns = r.name(f, p, "namespace", dns_label_problem).value_or(e.c.ns);
  });
  r.member(v, path, "labels",
           [&](const Json& f, const std::string& p) { read_labels(r, f, p, e.c.labels); });
  r.member(v, path, "networks", [&](const Json& f, const std::string& p) {
    r.elements(f, p, "network attachments", [&](const Json& el, const std::string& ep) {
      if (auto a = read_attachment(r, el, ep)) e.attachments.push_back(std::move(*a));
    });
  });
  r.member(v, path, "publish", [&](const Json& f, const std::string& p) {
    r.elements(f, p, "port mappings", [&](const Json& el, const std::string& ep) {
      if (auto pub = read_publish(r, el, ep)) e.publishes.push_back({std::move(*pub), ep});
    });
  });
  r.member(v, path, "expose", [&](const Json& f, const std::string& p) {
    r.elements(f, p, "ports", [&](const Json& el, const std::string& ep) {
      if (auto expose = read_expose(r, el, ep)) e.c.expose.push_back(*expose);
    });
  });
  return e;
}

// Lets policy_read.cpp report through the Reader.
class ReaderSink : public policy_read::Sink {
 public:
  explicit ReaderSink(Reader& r) : r_(r) {}
  void visit(const std::string& path) override { r_.visit(path); }
  void problem(std::string path, std::string message) override {
    r_.problem(std::move(path), std::move(message));
  }

 private:
  Reader& r_;
};

Document read_document(Reader& r, const Json& root, const std::string& source) {
  Document doc;
  r.visit("");
  if (!root.is_object()) {
    r.problem("",
              "the document must be an object with \"networks\", \"containers\" and "
              "\"policies\", not " +
                  describe(root));
    return doc;
  }
  r.object(root, "", {{"networks"}, {"containers"}, {"namespaces"}, {"policies"}, {"host"}});
  // The host's side: which interfaces lead to the world (published ports
  // arrive there, masquerade leaves there).
  r.member(root, "", "host", [&](const Json& v, const std::string& p) {
    if (!r.object(v, p, {{"uplinks"}})) return;
    r.member(v, p, "uplinks", [&](const Json& f, const std::string& fp) {
      r.elements(f, fp, "interface names", [&](const Json& el, const std::string& ep) {
        auto name = r.string(el, ep);
        if (!name) return;
        if (name->empty() || name->size() >= 16 || name->find('/') != std::string::npos ||
            name->find(' ') != std::string::npos)
          r.problem(ep, "\"" + *name + "\" is not an interface name (1-15 characters, no '/' or space)");
        else
          doc.uplinks.push_back(*name);
      });
    });
  });
  r.member(root, "", "networks", [&](const Json& v, const std::string& p) {
    r.elements(v, p, "networks", [&](const Json& el, const std::string& ep) {
      doc.networks.push_back(read_network(r, el, ep));
    });
  });
  r.member(root, "", "containers", [&](const Json& v, const std::string& p) {
    r.elements(v, p, "containers", [&](const Json& el, const std::string& ep) {
      doc.containers.push_back(read_container(r, el, ep));
    });
  });
  // Segmentation policies (policy_read.cpp).
  ReaderSink sink(r);
  r.member(root, "", "namespaces", [&](const Json& v, const std::string& p) {
    policy_read::read_namespaces(v, p, source, sink, doc.namespaces);
  });
  r.member(root, "", "policies", [&](const Json& v, const std::string& p) {
    policy_read::read_policies(v, p, source, sink, doc.policies);
  });
  policy_read::check_unique(doc.namespaces, doc.policies, sink);
  return doc;
}

// ---------------------------------------------------------------------------
// Pass 3: what spans entries, and IPAM

// Docker's default address pools, in its order; 172.17.0.0/16 is its default bridge.
std::vector<Ipv4Prefix> default_subnet_pool() {
  std::vector<Ipv4Prefix> pool;
  for (uint32_t b = 18; b <= 31; ++b) pool.push_back({Ipv4{172u << 24 | b << 16}, 16});
  for (uint32_t c = 0; c < 256; c += 16)
    pool.push_back({Ipv4{192u << 24 | 168u << 16 | c << 8}, 20});
  return pool;
}

// The first host port two publishes share, if they collide.
std::optional<uint16_t> first_shared_port(const Publish& a, const Publish& b) {
  if (a.protocol != b.protocol) return std::nullopt;
  if (a.host_ip && b.host_ip && *a.host_ip != *b.host_ip) return std::nullopt;
  uint32_t low = std::max(a.host_port, b.host_port);
  uint32_t end = std::min(a.host_port + a.count, b.host_port + b.count);
  if (low >= end) return std::nullopt;
  return static_cast<uint16_t>(low);
}

class Resolver {
 public:
  Resolver(Document& doc, Problems& problems) : doc_(doc), problems_(problems) {}

  void run() {
    check_unique_names(doc_.networks, "network");
    check_unique_names(doc_.containers, "container");
    check_subnet_overlaps();
    allocate_subnets();
    resolve_attachments();
    reserve_fixed_addresses();
    allocate_addresses();
    check_publish_conflicts();
    check_published_reachable();
  }

 private:
  template <class Entry>
  void check_unique_names(const std::vector<Entry>& entries, std::string_view kind) {
    std::map<std::string, const std::string*> first_path;
    for (const Entry& e : entries) {
      if (e.name().empty()) continue;
      auto [first, added] = first_path.emplace(e.name(), &e.path);
      if (!added) {
        problems_.add(key_path(e.path, "name"), "duplicate " + std::string(kind) + " name " +
                                                    quote(e.name()) + " (first used at " +
                                                    *first->second + ")");
      }
    }
  }

  void check_subnet_overlaps() {
    auto& nets = doc_.networks;
    for (size_t j = 0; j < nets.size(); ++j) {
      for (size_t i = 0; i < j; ++i) {
        if (!nets[i].subnet_given || !nets[j].subnet_given) continue;
        if (!nets[i].net.subnet.overlaps(nets[j].net.subnet)) continue;
        problems_.add(key_path(nets[j].path, "subnet"),
                      "subnet " + nets[j].net.subnet.str() + " of " + nets[j].label() +
                          " overlaps subnet " + nets[i].net.subnet.str() + " of " +
                          nets[i].label() + " (" + nets[i].path + ")");
      }
    }
  }

  // Like Docker: the first pool subnet that no network uses, explicit ones
  // anywhere in the file and allocated ones before this network.
  void allocate_subnets() {
    std::vector<Ipv4Prefix> taken;
    for (const NetworkEntry& n : doc_.networks) {
      if (n.subnet_given) taken.push_back(n.net.subnet);
    }
    const std::vector<Ipv4Prefix> pool = default_subnet_pool();
    for (NetworkEntry& n : doc_.networks) {
      if (!n.addressing_ok) continue;
      if (!n.subnet_given) {
        auto free = std::find_if(pool.begin(), pool.end(), [&taken](const Ipv4Prefix& candidate) {
          return std::none_of(taken.begin(), taken.end(),
                              [&](const Ipv4Prefix& t) { return t.overlaps(candidate); });
        });
        if (free == pool.end()) {
          n.addressing_ok = false;
          problems_.add(n.path,
                        "no default subnet is left (172.18.0.0/16 to 172.31.0.0/16 and "
                        "192.168.0.0/20 to 192.168.240.0/20 are used); set \"subnet\"");
          continue;
        }
        n.net.subnet = *free;
        taken.push_back(*free);
      }
      if (!n.gateway_given) n.net.gateway = n.net.subnet.first_host();
      n.next_free = n.net.subnet.first_host().value;
    }
  }

  void resolve_attachments() {
    std::map<std::string, int> index;
    std::vector<std::string> names;
    for (size_t i = 0; i < doc_.networks.size(); ++i) {
      const std::string& name = doc_.networks[i].name();
      if (!name.empty() && index.emplace(name, static_cast<int>(i)).second) names.push_back(name);
    }
    for (ContainerEntry& c : doc_.containers) {
      std::map<std::string, const std::string*> attached;  // network -> first attachment's path
      for (AttachmentEntry& a : c.attachments) {
        auto it = index.find(a.att.network);
        if (it == index.end()) {
          problems_.add(a.network_path, "unknown network " + quote(a.att.network) +
                                            (names.empty() ? ": the file defines no networks"
                                                           : did_you_mean(a.att.network, names)));
          continue;
        }
        a.network = it->second;
        auto [first, added] = attached.emplace(a.att.network, &a.path);
        if (!added) {
          problems_.add(a.network_path, c.label() + " is already attached to network " +
                                            quote(a.att.network) + " (at " + *first->second + ")");
        }
      }
    }
  }

  NetworkEntry* usable_network(const AttachmentEntry& a) {
    if (a.network < 0) return nullptr;
    NetworkEntry& n = doc_.networks[a.network];
    return n.addressing_ok ? &n : nullptr;
  }

  void reserve_fixed_addresses() {
    for (ContainerEntry& c : doc_.containers) {
      for (AttachmentEntry& a : c.attachments) {
        NetworkEntry* n = usable_network(a);
        if (!n || !a.att.ip_from_file || !a.ip_ok) continue;
        std::string ip = a.att.ip.str();
        if (!n->subnet_given) {
          // As in Docker: an allocated subnet depends on the rest of the file,
          // so an address chosen for it would break by surprise.
          problems_.add(a.ip_path, "a fixed ip needs a network with an explicit \"subnet\"; " +
                                       n->label() + " has none");
        } else if (auto why = host_address_problem(a.att.ip, n->net.subnet)) {
          problems_.add(a.ip_path, ip + " " + *why + " of " + n->label());
        } else if (a.att.ip == n->net.gateway) {
          problems_.add(a.ip_path, ip + " is the gateway of " + n->label());
        } else if (auto owner = n->owners.find(a.att.ip.value); owner != n->owners.end()) {
          problems_.add(a.ip_path, ip + " is already used by " + owner->second.container + " (at " +
                                       owner->second.path + ")");
        } else {
          n->owners.emplace(a.att.ip.value, NetworkEntry::Owner{c.label(), a.ip_path});
        }
      }
    }
  }

  // The lowest free host address, like Docker's IPAM.
  void allocate_addresses() {
    for (ContainerEntry& c : doc_.containers) {
      for (AttachmentEntry& a : c.attachments) {
        NetworkEntry* n = usable_network(a);
        if (!n || a.att.ip_from_file) continue;
        const uint64_t broadcast = n->net.subnet.broadcast().value;
        while (n->next_free < broadcast &&
               (n->next_free == n->net.gateway.value || n->owners.contains(n->next_free))) {
          ++n->next_free;
        }
        if (n->next_free >= broadcast) {
          problems_.add(a.path, "no free address is left in subnet " + n->net.subnet.str() +
                                    " of " + n->label());
          continue;
        }
        a.att.ip = Ipv4{static_cast<uint32_t>(n->next_free)};
        n->owners.emplace(a.att.ip.value, NetworkEntry::Owner{c.label(), a.path});
      }
    }
  }

  void check_publish_conflicts() {
    std::vector<std::pair<const ContainerEntry*, const PublishEntry*>> earlier;
    for (const ContainerEntry& c : doc_.containers) {
      for (const PublishEntry& p : c.publishes) {
        for (const auto& [other_container, other] : earlier) {
          auto port = first_shared_port(other->pub, p.pub);
          if (!port) continue;
          problems_.add(p.path, "host port " + std::to_string(*port) + "/" +
                                    to_string(p.pub.protocol) + " is already published by " +
                                    other_container->label() + " (" + other->path + ": " +
                                    quote(other->pub.text) + ")");
          break;
        }
        earlier.emplace_back(&c, &p);
      }
    }
  }

  // Docker silently ignores -p for a container that only has internal
  // networks (or none); a policy tool should say so instead.
  void check_published_reachable() {
    for (const ContainerEntry& c : doc_.containers) {
      if (c.publishes.empty()) continue;
      std::string path = key_path(c.path, "publish");
      if (c.attachments.empty()) {
        problems_.add(path, "a container without networks cannot be published");
        continue;
      }
      // An unknown network is reported already and might be the public one.
      bool only_internal =
          std::all_of(c.attachments.begin(), c.attachments.end(), [this](const AttachmentEntry& a) {
            return a.network >= 0 && doc_.networks[a.network].net.internal;
          });
      if (!only_internal) continue;
      std::string names;
      for (const AttachmentEntry& a : c.attachments) {
        names += (names.empty() ? "" : ", ") + quote(a.att.network);
      }
      problems_.add(path, "internal network containers cannot be published: " + c.label() +
                              " is only on internal networks (" + names +
                              "); attach it to a non-internal network too");
    }
  }

  Document& doc_;
  Problems& problems_;
};

Config build_config(Document&& doc, const std::string& source) {
  Config cfg;
  cfg.source = source;
  cfg.uplinks = std::move(doc.uplinks);
  cfg.namespaces = std::move(doc.namespaces);
  cfg.policies = std::move(doc.policies);
  for (NetworkEntry& n : doc.networks) cfg.networks.push_back(std::move(n.net));
  for (ContainerEntry& c : doc.containers) {
    for (AttachmentEntry& a : c.attachments) c.c.networks.push_back(std::move(a.att));
    for (PublishEntry& p : c.publishes) c.c.publish.push_back(std::move(p.pub));
    cfg.containers.push_back(std::move(c.c));
  }
  return cfg;
}

}  // namespace

std::string to_string(Protocol p) { return protocol_names().at(static_cast<size_t>(p)); }

const Network* Config::find_network(const std::string& name) const {
  auto it = std::find_if(networks.begin(), networks.end(),
                         [&name](const Network& n) { return n.name == name; });
  return it == networks.end() ? nullptr : &*it;
}

const Container* Config::find_container(const std::string& name) const {
  auto it = std::find_if(containers.begin(), containers.end(),
                         [&name](const Container& c) { return c.name == name; });
  return it == containers.end() ? nullptr : &*it;
}

std::string Problem::format(const std::string& file) const {
  if (line > 0) {
    return file + ":" + std::to_string(line) + ":" + std::to_string(column) + ": " + message;
  }
  if (path.empty()) return file + ": " + message;
  return file + ": " + path + ": " + message;
}

std::string closest_match(const std::string& word, const std::vector<std::string>& candidates) {
  const std::string w = lower(word);
  const size_t limit = std::max<size_t>(2, w.size() / 3);
  std::string best;
  size_t best_distance = limit + 1;
  for (const std::string& candidate : candidates) {
    size_t d = edit_distance(w, lower(candidate));
    // Replacing every character is no suggestion at all ("ab" -> "ip").
    if (d < best_distance && d < std::max(w.size(), candidate.size())) {
      best = candidate;
      best_distance = d;
    }
  }
  return best;
}

ParseResult parse_config(const std::string& text, const std::string& source) {
  try {
    Problems problems;
    std::optional<Json> root = parse_json(text, problems);
    if (root) {
      Reader reader(problems);
      Document doc = read_document(reader, *root, source);
      Resolver(doc, problems).run();
      if (problems.empty()) return {build_config(std::move(doc), source), {}};
    }
    return {std::nullopt, std::move(problems).in_document_order()};
  } catch (const std::exception& e) {  // bad_alloc, or a bug: still never throw
    return {std::nullopt, {Problem{"", std::string("internal error: ") + e.what()}}};
  }
}

PolicyFileResult parse_policy_file(const std::string& text, const std::string& source) {
  try {
    Problems problems;
    std::optional<Json> root;
    if (policy_read::looks_like_yaml(text, source)) {
      std::vector<Problem> found;
      root = policy_read::yaml_to_json(text, found);
      for (Problem& p : found) problems.add(std::move(p));
    } else {
      root = parse_json(text, problems);
    }
    if (root) {
      Reader reader(problems);
      ReaderSink sink(reader);
      PolicyFile file;
      policy_read::read_policy_file(*root, source, sink, file);
      if (problems.empty()) return {std::move(file), {}};
    }
    return {std::nullopt, std::move(problems).in_document_order()};
  } catch (const std::exception& e) {
    return {std::nullopt, {Problem{"", std::string("internal error: ") + e.what()}}};
  }
}

}  // namespace moat
