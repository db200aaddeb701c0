// RFC 8785 (JCS) canonical JSON of `request.object` inside a raw AdmissionReview body, for
// objectDigest. simdjson parses the bytes; this file only walks the tree and writes the canonical
// form. Anything it is not sure to write exactly as the JavaScript emitter would (the parsed
// object's RFC 8785 form) answers null instead, and the caller computes the digest from the
// parsed object: duplicate keys, keys whose UTF-16 order could differ from their byte order, a
// body simdjson refuses (invalid UTF-8, a lone surrogate escape, integer text beyond 64 bits, a
// number out of double range), a missing or null object, an ambiguous request or object member.
// Integers beyond 2^53 are written as the double JSON.parse rounds them to; a leading BOM is
// skipped, as fastify's parser skips it.
#include <napi.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstring>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "simdjson.h"

namespace {

using simdjson::dom::element;
using simdjson::dom::element_type;
using simdjson::dom::object;
/** Members of the objects being written, as (key, value), innermost object's last. */
using Members = std::vector<std::pair<std::string_view, element>>;

/** Thrown inside the walk: the caller answers null and JavaScript computes the digest instead. */
struct NotHandled {};

/** Writes `d` as ECMAScript Number::toString does (RFC 8785 3.2.2.3). */
void WriteDouble(double d, std::string& out) {
  if (!std::isfinite(d)) throw NotHandled{};
  if (d == 0) {  // +0 and -0 are both "0"
    out += '0';
    return;
  }
  // Shortest digits that round-trip, as "d.ddde±x" (the same digits ECMAScript picks).
  char sci[40];
  auto r = std::to_chars(sci, sci + sizeof sci, d, std::chars_format::scientific);
  if (r.ec != std::errc()) throw NotHandled{};
  std::string_view s(sci, r.ptr - sci);
  if (s.front() == '-') {
    out += '-';
    s.remove_prefix(1);
  }
  size_t e = s.find('e');
  if (e == std::string_view::npos) throw NotHandled{};
  std::string digits;
  for (char c : s.substr(0, e))
    if (c != '.') digits += c;
  int exp10 = 0;
  std::string_view es = s.substr(e + 1);
  if (!es.empty() && es.front() == '+') es.remove_prefix(1);
  auto er = std::from_chars(es.data(), es.data() + es.size(), exp10);
  if (er.ec != std::errc()) throw NotHandled{};
  const int k = static_cast<int>(digits.size());
  const int n = exp10 + 1;  // value = 0.digits × 10^n
  if (k <= n && n <= 21) {
    out += digits;
    out.append(n - k, '0');
  } else if (0 < n && n <= 21) {
    out.append(digits, 0, n);
    out += '.';
    out.append(digits, n, std::string::npos);
  } else if (-6 < n && n <= 0) {
    out += "0.";
    out.append(-n, '0');
    out += digits;
  } else {
    out += digits[0];
    if (k > 1) {
      out += '.';
      out.append(digits, 1, std::string::npos);
    }
    out += 'e';
    out += n - 1 >= 0 ? '+' : '-';
    out += std::to_string(std::abs(n - 1));
  }
}

const char HEX[] = "0123456789abcdef";

/**
 * Index of the first byte of s[from, n) that JSON.stringify escapes (`"`, `\`, below 0x20), or n.
 * Eight bytes at a time (SWAR: a zero byte of x ^ c marks a byte equal to c; bytes below 0x20
 * underflow when 0x20 is taken from each), then byte by byte for the tail.
 */
size_t FirstToEscape(const char* s, size_t from, size_t n) {
  constexpr uint64_t kOnes = 0x0101010101010101ULL;
  constexpr uint64_t kHigh = 0x8080808080808080ULL;
  size_t i = from;
  for (; i + 8 <= n; i += 8) {
    uint64_t x;
    std::memcpy(&x, s + i, 8);
    const uint64_t quote = x ^ (kOnes * '"');
    const uint64_t backslash = x ^ (kOnes * '\\');
    // (v - 0x01..) & ~v & 0x80.. is non-zero iff some byte of v is zero; (x - 0x20..) & ~x & 0x80..
    // iff some byte is below 0x20 (a byte of 0x80 or more never counts: ~x clears its high bit).
    const uint64_t hit = ((quote - kOnes) & ~quote) | ((backslash - kOnes) & ~backslash) | ((x - kOnes * 0x20) & ~x);
    if (hit & kHigh) break;
  }
  for (; i < n; i++) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c < 0x20 || c == '"' || c == '\\') return i;
  }
  return n;
}

/** Writes a UTF-8 string as JSON.stringify does (RFC 8785 3.2.2.2). */
void WriteString(std::string_view s, std::string& out) {
  out += '"';
  const char* p = s.data();
  const size_t n = s.size();
  size_t plain = 0;
  for (size_t i = FirstToEscape(p, 0, n); i < n; i = FirstToEscape(p, plain, n)) {
    const unsigned char c = static_cast<unsigned char>(p[i]);
    out.append(p + plain, i - plain);
    plain = i + 1;
    out += '\\';
    switch (c) {
      case '"': out += '"'; break;
      case '\\': out += '\\'; break;
      case '\b': out += 'b'; break;
      case '\t': out += 't'; break;
      case '\n': out += 'n'; break;
      case '\f': out += 'f'; break;
      case '\r': out += 'r'; break;
      default:
        out += "u00";
        out += HEX[c >> 4];
        out += HEX[c & 15];
    }
  }
  out.append(p + plain, n - plain);
  out += '"';
}

/**
 * True when a key's UTF-8 byte order is its UTF-16 code-unit order against any other key: no
 * character at or above U+E000 (lead bytes 0xEE to 0xF4), where the two orders can disagree.
 */
bool ByteOrderIsUtf16Order(std::string_view k) {
  for (unsigned char c : k)
    if (c >= 0xEE) return false;
  return true;
}

void WriteValue(element v, std::string& out, Members& scratch);

void WriteObject(object o, std::string& out, Members& scratch) {
  // This object's members sit in scratch[base, end): nested objects push theirs after `end` and
  // take them off again, so indices stay valid (references would not, across a reallocation).
  const size_t base = scratch.size();
  for (auto field : o) {
    if (!ByteOrderIsUtf16Order(field.key)) throw NotHandled{};
    scratch.emplace_back(field.key, field.value);
  }
  const size_t end = scratch.size();
  std::sort(scratch.begin() + base, scratch.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  // JSON.parse keeps the last of duplicate keys: rare enough to leave to JavaScript.
  for (size_t i = base; i + 1 < end; i++)
    if (scratch[i].first == scratch[i + 1].first) throw NotHandled{};
  out += '{';
  for (size_t i = base; i < end; i++) {
    if (i > base) out += ',';
    const std::pair<std::string_view, element> m = scratch[i];
    WriteString(m.first, out);
    out += ':';
    WriteValue(m.second, out, scratch);
  }
  out += '}';
  scratch.resize(base);
}

/** Integers a double holds exactly: |v| ≤ 2^53 (written as integers; larger ones as JSON.parse rounds them). */
constexpr int64_t kSafe = int64_t{1} << 53;

void WriteValue(element v, std::string& out, Members& scratch) {
  switch (v.type()) {
    case element_type::OBJECT:
    {
      object o;
      if (v.get(o)) throw NotHandled{};
      WriteObject(o, out, scratch);
      return;
    }
    case element_type::ARRAY: {
      simdjson::dom::array a;
      if (v.get(a)) throw NotHandled{};
      out += '[';
      bool comma = false;
      for (element item : a) {
        if (comma) out += ',';
        comma = true;
        WriteValue(item, out, scratch);
      }
      out += ']';
      return;
    }
    case element_type::STRING:
      WriteString(v.get_string().value_unsafe(), out);
      return;
    // Beyond 2^53 JSON.parse rounds the integer to the nearest double, as the conversion does.
    case element_type::INT64: {
      const int64_t i = v.get_int64().value_unsafe();
      if (i > kSafe || i < -kSafe) WriteDouble(static_cast<double>(i), out);
      else out += std::to_string(i);
      return;
    }
    case element_type::UINT64: {
      const uint64_t u = v.get_uint64().value_unsafe();
      if (u > static_cast<uint64_t>(kSafe)) WriteDouble(static_cast<double>(u), out);
      else out += std::to_string(u);
      return;
    }
    case element_type::DOUBLE:
      WriteDouble(v.get_double().value_unsafe(), out);
      return;
    case element_type::BOOL:
      out += v.get_bool().value_unsafe() ? "true" : "false";
      return;
    case element_type::NULL_VALUE:
      out += "null";
      return;
    default:
      throw NotHandled{};
  }
}

/**
 * The value of `key` in object `v` when it is there exactly once (JSON.parse would take the last
 * of several, simdjson's lookup the first: such a body is left to JavaScript).
 */
bool OnlyMember(element v, std::string_view key, element& found) {
  object o;
  if (v.get(o)) return false;  // not an object
  int seen = 0;
  for (auto field : o) {
    if (field.key == key) {
      found = field.value;
      seen++;
    }
  }
  return seen == 1;
}

struct State {
  simdjson::dom::parser parser;
  std::string out;
  Members scratch;
};

/**
 * canonicalObjectOfReview(body: Uint8Array): Buffer | null — the RFC 8785 bytes of
 * body.request.object, or null when JavaScript should compute them (see the top of this file).
 */
Napi::Value CanonicalObjectOfReview(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsTypedArray()) {
    Napi::TypeError::New(env, "canonicalObjectOfReview(body: Uint8Array)").ThrowAsJavaScriptException();
    return env.Null();
  }
  auto body = info[0].As<Napi::Uint8Array>();
  State* st = env.GetInstanceData<State>();
  element root;
  // parse() copies into the parser's padded buffer: the body needs no SIMDJSON_PADDING of its own.
  if (st->parser.parse(reinterpret_cast<const char*>(body.Data()), body.ByteLength(), true).get(root)) return env.Null();
  element request, obj;
  if (!OnlyMember(root, "request", request) || !OnlyMember(request, "object", obj) || obj.type() == element_type::NULL_VALUE) return env.Null();
  st->out.clear();
  st->out.reserve(body.ByteLength() + 64);
  st->scratch.clear();
  try {
    WriteValue(obj, st->out, st->scratch);
  } catch (const NotHandled&) {
    return env.Null();
  }
  return Napi::Buffer<char>::Copy(env, st->out.data(), st->out.size());
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  env.SetInstanceData(new State());
  exports.Set("canonicalObjectOfReview", Napi::Function::New(env, CanonicalObjectOfReview, "canonicalObjectOfReview"));
  return exports;
}

}  // namespace

NODE_API_MODULE(jcs, Init)
