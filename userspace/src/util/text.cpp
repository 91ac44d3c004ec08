// text.cpp - see text.h.
#include "util/text.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <nlohmann/json.hpp>

namespace moat {
namespace {

bool is_identifier(std::string_view key) {
  if (key.empty() || std::isdigit(static_cast<unsigned char>(key[0]))) return false;
  return std::all_of(key.begin(), key.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '$';
  });
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

}  // namespace

namespace {

// Characters that print as nothing or reorder what follows: shown as
// escapes, so a key with a BOM or a zero-width space does not look like
// the key it is not.
bool invisible(uint32_t cp) {
  return cp == 0xAD || cp == 0x61C || cp == 0x180E || (cp >= 0x200B && cp <= 0x200F) ||
         (cp >= 0x202A && cp <= 0x202E) || (cp >= 0x2060 && cp <= 0x2064) ||
         (cp >= 0x2066 && cp <= 0x2069) || cp == 0xFEFF || (cp >= 0xFFF9 && cp <= 0xFFFB);
}

// A run of `s` escaped as inside a JSON string (no quotes around it).
std::string json_escaped(std::string_view s) {
  using Json = nlohmann::json;
  std::string q = Json(std::string(s)).dump(-1, ' ', false, Json::error_handler_t::replace);
  return q.substr(1, q.size() - 2);
}

}  // namespace

CodePoint utf8_at(std::string_view s, size_t i) {
  const auto b = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char c = b(i);
  if (c < 0x80) return {c, 1};
  const size_t n = (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
  if (n == 0 || i + n > s.size()) return {};
  uint32_t cp = c & (0xFF >> (n + 1));
  for (size_t k = 1; k < n; ++k) {
    if ((b(i + k) & 0xC0) != 0x80) return {};
    cp = cp << 6 | (b(i + k) & 0x3F);
  }
  static constexpr uint32_t kShortest[] = {0, 0, 0x80, 0x800, 0x10000};
  if (cp < kShortest[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return {};
  return {cp, n};
}

std::string quote(std::string_view s) {
  // A value pasted by mistake (a whole file, a certificate) must not fill
  // the terminal: the first kQuoteMax bytes, cut on a character boundary.
  constexpr size_t kQuoteMax = 80;
  std::string_view shown = s;
  if (s.size() > kQuoteMax) {
    size_t end = kQuoteMax;
    while (end > 0 && (static_cast<unsigned char>(s[end]) & 0xC0) == 0x80) --end;
    shown = s.substr(0, end);
  }
  std::string body;
  size_t plain = 0;  // start of the run not yet copied
  for (size_t i = 0; i < shown.size();) {
    auto [cp, n] = utf8_at(shown, i);
    if (n && invisible(cp)) {
      body += json_escaped(shown.substr(plain, i - plain));
      char esc[8];
      std::snprintf(esc, sizeof esc, "\\u%04X", static_cast<unsigned>(cp));
      body += esc;
      plain = i + n;
    }
    i += n ? n : 1;
  }
  body += json_escaped(shown.substr(plain));
  std::string out = "\"" + body + "\"";
  if (shown.size() < s.size()) out += "... (cut: " + std::to_string(s.size()) + " bytes in all)";
  return out;
}

std::string closest_match(const std::string& word, const std::vector<std::string>& candidates) {
  // The distance table is |word| x |candidate|: a pasted blob is no typo.
  constexpr size_t kLongestTypo = 64;
  if (word.size() > kLongestTypo) return "";
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

std::string did_you_mean(const std::string& word, const std::vector<std::string>& candidates) {
  std::string best = closest_match(word, candidates);
  return best.empty() ? "" : " (did you mean " + quote(best) + "?)";
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string upper(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return out;
}

std::string join(const std::vector<std::string>& parts, std::string_view separator) {
  std::string out;
  for (const std::string& p : parts) {
    if (!out.empty()) out += separator;
    out += p;
  }
  return out;
}

// Paths are made for every value a reader visits (a 100,000-rule policy:
// about a million), so each is built in one allocation, not a temporary
// per `+`.
std::string key_path(const std::string& path, std::string_view key) {
  if (!is_identifier(key)) return path + "[" + quote(key) + "]";
  std::string out;
  out.reserve(path.size() + 1 + key.size());
  out += path;
  if (!path.empty()) out += '.';
  out += key;
  return out;
}

std::string index_path(const std::string& path, size_t index) {
  char digits[24];
  char* end = std::to_chars(digits, digits + sizeof digits, index).ptr;
  std::string out;
  out.reserve(path.size() + 2 + static_cast<size_t>(end - digits));
  out += path;
  out += '[';
  out.append(digits, end);
  out += ']';
  return out;
}

std::string parent_path(const std::string& path) {
  size_t cut = path.find_last_of(".[");
  return cut == std::string::npos ? "" : path.substr(0, cut);
}

}  // namespace moat
