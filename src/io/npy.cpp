#include "zaya/npy.h"

#include <cstring>
#include <fstream>
#include <limits>
#include <optional>

#include "zaya/error.h"

namespace zaya {

namespace {

constexpr char kMagic[] = "\x93NUMPY";
constexpr size_t kMagicLen = 6;
constexpr size_t kAlign = 64;            // numpy's ARRAY_ALIGN
constexpr size_t kGrowthAxisDigits = 21;  // numpy's GROWTH_AXIS_MAX_DIGITS

std::string shape_repr(const std::vector<int64_t>& shape) {
  // Python's tuple repr: (), (5,), (2, 3).
  std::string s = "(";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  if (shape.size() == 1) s += ",";
  return s + ")";
}

int64_t checked_numel(const std::vector<int64_t>& shape, const std::string& what) {
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0) throw Error(cat(what, ": negative dimension in shape ", shape_repr(shape)));
    if (d != 0 && n > std::numeric_limits<int64_t>::max() / d) throw Error(cat(what, ": shape ", shape_repr(shape), " overflows"));
    n *= d;
  }
  return n;
}

void write_npy(const std::string& path, const char* descr, const void* data, size_t elem,
               const std::vector<int64_t>& shape) {
  const int64_t n = checked_numel(shape, path);
  const std::string header = npy_header(descr, shape);
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) throw Error(cat(path, ": cannot open for writing: ", std::strerror(errno)));
  out.write(header.data(), static_cast<std::streamsize>(header.size()));
  // Little-endian hosts only (x86-64, arm64), as the rest of the runtime.
  if (n > 0) out.write(static_cast<const char*>(data), static_cast<std::streamsize>(static_cast<size_t>(n) * elem));
  out.close();
  if (!out) throw Error(cat(path, ": write failed"));
}

// A tiny reader for the Python dict literal numpy writes: {'key': value, ...} where value is a string, True/False,
// or a tuple of integers. Nothing else is accepted.
class HeaderParser {
 public:
  HeaderParser(const std::string& text, const std::string& path) : s_(text), path_(path) {}

  struct Value {
    enum Kind { Str, Bool, Tuple } kind;
    std::string str;
    bool b = false;
    std::vector<int64_t> tuple;
  };

  std::vector<std::pair<std::string, Value>> parse_dict() {
    std::vector<std::pair<std::string, Value>> out;
    ws();
    expect('{');
    ws();
    while (peek() != '}') {
      std::string key = parse_str();
      ws();
      expect(':');
      ws();
      Value v = parse_value();
      for (const auto& kv : out)
        if (kv.first == key) fail(cat("duplicate key '", key, "'"));
      out.emplace_back(std::move(key), std::move(v));
      ws();
      if (peek() == ',') {
        ++i_;
        ws();
      } else if (peek() != '}') {
        fail("expected ',' or '}'");
      }
    }
    ++i_;
    ws();
    if (i_ != s_.size()) fail("trailing characters after the dict");
    return out;
  }

 private:
  [[noreturn]] void fail(const std::string& why) const {
    throw Error(cat(path_, ": malformed .npy header (", why, " at offset ", i_, "): ", s_));
  }
  char peek() const { return i_ < s_.size() ? s_[i_] : '\0'; }
  void ws() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\n' || s_[i_] == '\t' || s_[i_] == '\r')) ++i_;
  }
  void expect(char c) {
    if (peek() != c) fail(cat("expected '", c, "'"));
    ++i_;
  }
  std::string parse_str() {
    const char q = peek();
    if (q != '\'' && q != '"') fail("expected a quoted string");
    ++i_;
    const size_t end = s_.find(q, i_);
    if (end == std::string::npos) fail("unterminated string");
    std::string r = s_.substr(i_, end - i_);
    i_ = end + 1;
    return r;
  }
  int64_t parse_int() {
    const size_t start = i_;
    uint64_t v = 0;
    while (i_ < s_.size() && s_[i_] >= '0' && s_[i_] <= '9') {
      const uint64_t d = static_cast<uint64_t>(s_[i_] - '0');
      if (v > (static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) - d) / 10) fail("dimension too large");
      v = v * 10 + d;
      ++i_;
    }
    if (i_ == start) fail("expected a non-negative integer");
    if (peek() == 'L') ++i_;  // Python 2 long suffix in old files
    return static_cast<int64_t>(v);
  }
  Value parse_value() {
    Value v{};
    const char c = peek();
    if (c == '\'' || c == '"') {
      v.kind = Value::Str;
      v.str = parse_str();
    } else if (s_.compare(i_, 4, "True") == 0) {
      v.kind = Value::Bool;
      v.b = true;
      i_ += 4;
    } else if (s_.compare(i_, 5, "False") == 0) {
      v.kind = Value::Bool;
      i_ += 5;
    } else if (c == '(') {
      v.kind = Value::Tuple;
      ++i_;
      ws();
      while (peek() != ')') {
        v.tuple.push_back(parse_int());
        ws();
        if (peek() == ',') {
          ++i_;
          ws();
        } else if (peek() != ')') {
          fail("expected ',' or ')' in shape");
        }
      }
      ++i_;
    } else {
      fail("expected a string, True/False or a tuple");
    }
    return v;
  }

  const std::string& s_;
  const std::string& path_;
  size_t i_ = 0;
};

uint32_t read_le(const std::string& b, size_t at, size_t n) {
  uint32_t v = 0;
  for (size_t i = 0; i < n; ++i) v |= static_cast<uint32_t>(static_cast<uint8_t>(b[at + i])) << (8 * i);
  return v;
}

}  // namespace

int64_t NpyArray::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string npy_header(const std::string& descr, const std::vector<int64_t>& shape) {
  // Mirrors numpy.lib.format._write_array_header + _wrap_header for version 1.0: sorted keys, then spare spaces
  // for the growth axis, then spaces and '\n' up to a multiple of 64 (a full 64 when already aligned, as numpy).
  std::string dict = "{'descr': '" + descr + "', 'fortran_order': False, 'shape': " + shape_repr(shape) + ", }";
  if (!shape.empty()) dict.append(kGrowthAxisDigits - std::min(kGrowthAxisDigits, std::to_string(shape[0]).size()), ' ');
  const size_t hlen = dict.size() + 1;
  const size_t pad = kAlign - (kMagicLen + 2 + 2 + hlen) % kAlign;
  const size_t total = hlen + pad;
  if (total > 0xffff) throw Error(cat(".npy header for shape ", shape_repr(shape), " is too long for format 1.0"));
  std::string out(kMagic, kMagicLen);
  out += '\x01';
  out += '\x00';
  out += static_cast<char>(total & 0xff);
  out += static_cast<char>(total >> 8);
  out += dict;
  out.append(pad, ' ');
  out += '\n';
  return out;
}

void write_npy_f32(const std::string& path, const float* data, const std::vector<int64_t>& shape) {
  write_npy(path, "<f4", data, 4, shape);
}
void write_npy_i32(const std::string& path, const int32_t* data, const std::vector<int64_t>& shape) {
  write_npy(path, "<i4", data, 4, shape);
}
void write_npy_i64(const std::string& path, const int64_t* data, const std::vector<int64_t>& shape) {
  write_npy(path, "<i8", data, 8, shape);
}

NpyArray read_npy(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(cat(path, ": cannot open: ", std::strerror(errno)));
  std::string bytes;
  try {
    // filebuf reports read errors (e.g. EISDIR for a directory) by throwing ios_base::failure.
    bytes.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  } catch (const std::exception& e) {
    throw Error(cat(path, ": read failed: ", e.what()));
  }
  if (in.bad()) throw Error(cat(path, ": read failed"));

  if (bytes.size() < kMagicLen + 2 || bytes.compare(0, kMagicLen, kMagic, kMagicLen) != 0)
    throw Error(cat(path, ": not a .npy file (missing \\x93NUMPY magic)"));
  const int major = static_cast<uint8_t>(bytes[6]), minor = static_cast<uint8_t>(bytes[7]);
  size_t len_bytes = 0;
  if (major == 1 && minor == 0) len_bytes = 2;
  else if ((major == 2 || major == 3) && minor == 0) len_bytes = 4;
  else throw Error(cat(path, ": unsupported .npy format version ", major, ".", minor));
  if (bytes.size() < kMagicLen + 2 + len_bytes) throw Error(cat(path, ": truncated .npy header"));
  const size_t hlen = read_le(bytes, kMagicLen + 2, len_bytes);
  const size_t hstart = kMagicLen + 2 + len_bytes;
  if (hlen > bytes.size() - hstart)
    throw Error(cat(path, ": truncated .npy file: header length ", hlen, " runs past the file size ", bytes.size()));
  const std::string header = bytes.substr(hstart, hlen);

  NpyArray a;
  std::optional<std::string> descr;
  std::optional<bool> fortran;
  std::optional<std::vector<int64_t>> shape;
  for (auto& [key, v] : HeaderParser(header, path).parse_dict()) {
    using V = HeaderParser::Value;
    if (key == "descr") {
      if (v.kind != V::Str) throw Error(cat(path, ": .npy 'descr' is not a string"));
      descr = v.str;
    } else if (key == "fortran_order") {
      if (v.kind != V::Bool) throw Error(cat(path, ": .npy 'fortran_order' is not True/False"));
      fortran = v.b;
    } else if (key == "shape") {
      if (v.kind != V::Tuple) throw Error(cat(path, ": .npy 'shape' is not a tuple"));
      shape = v.tuple;
    } else {
      throw Error(cat(path, ": unexpected key '", key, "' in .npy header"));
    }
  }
  if (!descr || !fortran || !shape)
    throw Error(cat(path, ": .npy header lacks one of 'descr', 'fortran_order', 'shape': ", header));
  if (*fortran) throw Error(cat(path, ": Fortran-order .npy arrays are not supported; save with C order"));
  size_t elem = 0;
  if (*descr == "<f4" || *descr == "<i4") elem = 4;
  else if (*descr == "<f8" || *descr == "<i8") elem = 8;
  else throw Error(cat(path, ": unsupported .npy dtype '", *descr, "' (expected <f4, <f8, <i4 or <i8)"));
  a.descr = *descr;
  a.shape = *shape;
  const int64_t n = checked_numel(a.shape, path);
  const size_t dstart = hstart + hlen;
  const size_t have = bytes.size() - dstart;
  // Checked by division first so a huge shape cannot overflow n * elem.
  if (static_cast<uint64_t>(n) > have / elem || have != static_cast<size_t>(n) * elem)
    throw Error(cat(path, ": .npy data is ", have, " bytes, which does not match shape ", shape_repr(a.shape), " of ",
                    a.descr, " (", elem, " bytes each)"));

  const char* p = bytes.data() + dstart;
  const size_t count = static_cast<size_t>(n);
  a.data.resize(count);
  if (a.is_int()) a.i64.resize(count);
  if (a.descr == "<f4") {
    if (count) std::memcpy(a.data.data(), p, count * 4);
  } else if (a.descr == "<f8") {
    for (size_t i = 0; i < count; ++i) {
      double d;
      std::memcpy(&d, p + 8 * i, 8);
      a.data[i] = static_cast<float>(d);
    }
  } else if (a.descr == "<i4") {
    for (size_t i = 0; i < count; ++i) {
      int32_t v;
      std::memcpy(&v, p + 4 * i, 4);
      a.i64[i] = v;
    }
  } else {
    if (count) std::memcpy(a.i64.data(), p, count * 8);
  }
  if (a.is_int())
    for (size_t i = 0; i < count; ++i) a.data[i] = static_cast<float>(a.i64[i]);
  return a;
}

}  // namespace zaya
