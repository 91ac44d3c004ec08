// util/ - the vocabulary every folder shares: values (net.h, proto.h), words
// for messages (text.h), the error type at the OS boundary (result.h), owners
// (fd.h), what a one-shot command need not free (discard.h), names of abi.h
// values and paths. A leaf: it depends on nothing of
// moat's but bpf/abi.h, so any folder may use it without creating a cycle.
//
// text.h - words for messages. Every message that names a value quotes it the
// same way, and every place in a file is named by the same kind of path
// (`containers[0].labels["app.kubernetes.io/name"]`), so a user can search
// the file for what a message says.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace moat {

// As a JSON string (`"a\"b"`), so a name with odd characters stays readable;
// invalid UTF-8 becomes U+FFFD.
std::string quote(std::string_view s);

// The UTF-8 sequence at s[i]: its code point and length in bytes, or
// length 0 where none starts (a lone or continuation byte, a cut sequence,
// an overlong form, a surrogate, past U+10FFFF).
struct CodePoint {
  uint32_t value = 0;
  size_t length = 0;
};
CodePoint utf8_at(std::string_view s, size_t i);

// The closest candidate by edit distance, or "" if none is reasonably close.
std::string closest_match(const std::string& word, const std::vector<std::string>& candidates);

// ` (did you mean "networks"?)`, or "" when nothing is close.
std::string did_you_mean(const std::string& word, const std::vector<std::string>& candidates);

std::string lower(std::string_view s);
std::string upper(std::string_view s);
std::string join(const std::vector<std::string>& parts, std::string_view separator);

// Paths into a JSON document: `key_path("containers[0]", "name")` is
// `containers[0].name`; a key that would make the path ambiguous is quoted:
// `labels["app.kubernetes.io/name"]`. "" is the document itself.
std::string key_path(const std::string& path, std::string_view key);
std::string index_path(const std::string& path, size_t index);
std::string parent_path(const std::string& path);  // "" above a top-level key

}  // namespace moat
