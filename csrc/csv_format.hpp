// CSV rows in exactly the text Python's `csv.writer` (excel dialect, QUOTE_MINIMAL) writes for the
// same values: floats as `repr(float)`, ints as `str(int)`, bools as `True` / `False`, strings quoted
// only when they hold `,` `"` `\r` or `\n` (quotes doubled), rows ended by "\r\n". The Python writer
// (affinity_sdk/score/results.py) stays the reference and the fallback; tests compare the two.
#pragma once

#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

namespace affinity {
namespace csvfmt {

// Longest `repr(float)`: "-2.2250738585072014e-308" is 24 characters.
constexpr int kMaxDouble = 32;

// `repr(x)` of a Python float: the shortest digits that round-trip, in fixed notation when the
// decimal point lies within them or up to 4 zeros before them and at most 16 places after the first
// digit (then with at least one fraction digit: "1.0"), else as d[.ddd]e±XX.
inline int format_double(double x, char* out) {
    if (std::isnan(x)) {
        std::memcpy(out, "nan", 3);
        return 3;
    }
    if (std::isinf(x)) {
        if (x < 0) {
            std::memcpy(out, "-inf", 4);
            return 4;
        }
        std::memcpy(out, "inf", 3);
        return 3;
    }
    char sci[kMaxDouble];
    const auto res = std::to_chars(sci, sci + kMaxDouble, x, std::chars_format::scientific);
    const int len = static_cast<int>(res.ptr - sci);
    int i = 0;
    const bool neg = sci[0] == '-';
    i += neg;
    char digits[20];
    int nd = 0;
    int e = i;
    for (; e < len && sci[e] != 'e'; ++e)
        if (sci[e] != '.') digits[nd++] = sci[e];
    int exp10 = 0;
    std::from_chars(sci + e + 1 + (sci[e + 1] == '+'), sci + len, exp10);
    const int decpt = exp10 + 1;  // value = 0.d1d2... x 10^decpt
    if (decpt <= -4 || decpt > 16) {
        std::memcpy(out, sci, static_cast<size_t>(len));
        return len;
    }
    char* o = out;
    if (neg) *o++ = '-';
    if (decpt <= 0) {
        *o++ = '0';
        *o++ = '.';
        for (int k = 0; k < -decpt; ++k) *o++ = '0';
        std::memcpy(o, digits, static_cast<size_t>(nd));
        o += nd;
    } else if (decpt >= nd) {
        std::memcpy(o, digits, static_cast<size_t>(nd));
        o += nd;
        for (int k = nd; k < decpt; ++k) *o++ = '0';
        *o++ = '.';
        *o++ = '0';
    } else {
        std::memcpy(o, digits, static_cast<size_t>(decpt));
        o += decpt;
        *o++ = '.';
        std::memcpy(o, digits + decpt, static_cast<size_t>(nd - decpt));
        o += nd - decpt;
    }
    return static_cast<int>(o - out);
}

// One column of a table being written.
struct Column {
    enum Kind : uint8_t { FLOAT64, INT64, BOOL, STRING } kind;
    const double* f64 = nullptr;
    const int64_t* i64 = nullptr;
    const uint8_t* b = nullptr;
    std::vector<std::string_view> str;
};

inline bool needs_quotes(std::string_view s) {
    for (char c : s)
        if (c == ',' || c == '"' || c == '\r' || c == '\n') return true;
    return false;
}

inline void append_string(std::string& out, std::string_view s, bool only_field) {
    if (s.empty()) {
        if (only_field) out += "\"\"";  // csv.writer writes a row holding one empty string as ""
        return;
    }
    if (!needs_quotes(s)) {
        out.append(s.data(), s.size());
        return;
    }
    out += '"';
    for (char c : s) {
        if (c == '"') out += '"';
        out += c;
    }
    out += '"';
}

// Rows [begin, end) of `cols`, appended to `out`.
inline void write_rows(const std::vector<Column>& cols, size_t begin, size_t end, std::string& out) {
    char buf[kMaxDouble];
    const bool single = cols.size() == 1;
    for (size_t r = begin; r < end; ++r) {
        for (size_t c = 0; c < cols.size(); ++c) {
            if (c) out += ',';
            const Column& col = cols[c];
            switch (col.kind) {
                case Column::FLOAT64:
                    out.append(buf, static_cast<size_t>(format_double(col.f64[r], buf)));
                    break;
                case Column::INT64: {
                    const auto res = std::to_chars(buf, buf + kMaxDouble, col.i64[r]);
                    out.append(buf, static_cast<size_t>(res.ptr - buf));
                    break;
                }
                case Column::BOOL:
                    out += col.b[r] ? "True" : "False";
                    break;
                case Column::STRING:
                    append_string(out, col.str[r], single);
                    break;
            }
        }
        out += "\r\n";
    }
}

}  // namespace csvfmt
}  // namespace affinity
