// CSV rows in exactly the text Python's `csv.writer` (excel dialect, QUOTE_MINIMAL) writes for the
// same values: floats as `repr(float)`, ints as `str(int)`, bools as `True` / `False`, strings quoted
// only when they hold `,` `"` `\r` or `\n` (quotes doubled), rows ended by "\r\n". The Python writer
// (affinity_sdk/score/results.py) stays the reference and the fallback; tests compare the two.
#pragma once

#include <charconv>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>
#include <vector>

namespace affinity {
namespace csvfmt {

// Longest `repr(float)`: "-2.2250738585072014e-308" is 24 characters.
constexpr int kMaxDouble = 32;
// Longest field of a number column, with its separator: a float's 24 characters or an int64's 20.
constexpr size_t kMaxNumberField = 25;

// Python's layout of the shortest round-trip decimal `digits[0..nd) x 10^(decpt - nd)` (no trailing
// zeros in `digits`): fixed notation when -4 < decpt <= 16, then with at least one fraction digit
// ("1.0", "0.0001"), else d[.ddd]e±XX with at least two exponent digits.
inline char* layout_repr(bool neg, const char* digits, int nd, int decpt, char* o) {
    if (neg) *o++ = '-';
    if (decpt <= -4 || decpt > 16) {
        *o++ = digits[0];
        if (nd > 1) {
            *o++ = '.';
            std::memcpy(o, digits + 1, static_cast<size_t>(nd - 1));
            o += nd - 1;
        }
        int e = decpt - 1;
        *o++ = 'e';
        *o++ = e < 0 ? '-' : '+';
        if (e < 0) e = -e;
        if (e >= 100) {
            *o++ = static_cast<char>('0' + e / 100);
            e %= 100;
        }
        *o++ = static_cast<char>('0' + e / 10);
        *o++ = static_cast<char>('0' + e % 10);
    } else if (decpt <= 0) {
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
    return o;
}

// `repr(x)` through the standard library's shortest round trip (std::to_chars, scientific), re-laid
// out. The oracle of the fast path below, and its fallback for subnormals.
inline int format_double_to_chars(double x, char* out) {
    char sci[kMaxDouble];
    const auto res = std::to_chars(sci, sci + kMaxDouble, x, std::chars_format::scientific);
    const char* end = res.ptr;
    const char* p = sci + (sci[0] == '-');
    char digits[20];
    int nd = 0;
    for (; p < end && *p != 'e'; ++p)
        if (*p != '.') digits[nd++] = *p;
    int exp10 = 0;
    std::from_chars(p + 1 + (p[1] == '+'), end, exp10);
    return static_cast<int>(layout_repr(sci[0] == '-', digits, nd, exp10 + 1, out) - out);
}

// Shortest round-trip decimal of a finite, normal double by Schubfach (R. Giulietti, "The Schubfach
// way to render doubles", 2020; the algorithm of Java's Double.toString since JDK 19): the rounding
// interval of x is scaled by 10^-k with one 126-bit multiplication per bound, and the shortest
// decimal inside it (closest to x, ties to even) is read off. For normal doubles it is the decimal
// `repr` picks; Java's rule for one-digit results differs only for subnormals, which go to
// std::to_chars.
namespace schubfach {

constexpr int kMinExp10 = -292;  // the table holds g(e) for e = -k in [kMinExp10, kMaxExp10]
constexpr int kMaxExp10 = 324;
constexpr uint64_t kMask63 = (uint64_t{1} << 63) - 1;

// floor(q log10 2), floor(log10(3/4 2^q)) and floor(e log2 10), exact for |q|, |e| < 1200.
inline int flog10pow2(int q) { return static_cast<int>((int64_t{q} * 661971961083LL) >> 41); }
inline int flog10_three_quarters_pow2(int q) {
    return static_cast<int>((int64_t{q} * 661971961083LL - 274743187321LL) >> 41);
}
inline int flog2pow10(int e) { return static_cast<int>((int64_t{e} * 913124641741LL) >> 38); }

// g(e) = floor(10^e 2^-r) + 1 with r = flog2pow10(e) - 125, so 2^125 <= g < 2^126, kept as its
// high and low 63 bits. Computed once, exactly, with a small big integer.
class Pow10Table {
  public:
    Pow10Table() {
        std::vector<uint32_t> big{1};  // 10^e for e >= 0
        for (int e = 0; e <= kMaxExp10; ++e) {
            set(e, big, flog2pow10(e) - 125);
            mul_small(big, 10);
        }
        for (int e = -1; e >= kMinExp10; --e) {
            const int shift = 125 - flog2pow10(e);  // g = floor(2^shift / 10^-e) + 1
            std::vector<uint32_t> num(static_cast<size_t>(shift / 32 + 1), 0);
            num.back() = uint32_t{1} << (shift % 32);
            for (int k = 0; k < -e; ++k) div_small(num, 10);
            set(e, num, 0);
        }
    }
    uint64_t g1(int e) const { return g_[2 * (e - kMinExp10)]; }
    uint64_t g0(int e) const { return g_[2 * (e - kMinExp10) + 1]; }

  private:
    uint64_t g_[2 * (kMaxExp10 - kMinExp10 + 1)];

    static void mul_small(std::vector<uint32_t>& a, uint32_t m) {
        uint64_t carry = 0;
        for (uint32_t& limb : a) {
            const uint64_t v = uint64_t{limb} * m + carry;
            limb = static_cast<uint32_t>(v);
            carry = v >> 32;
        }
        if (carry) a.push_back(static_cast<uint32_t>(carry));
    }
    static void div_small(std::vector<uint32_t>& a, uint32_t d) {
        uint64_t rem = 0;
        for (size_t i = a.size(); i-- > 0;) {
            const uint64_t v = (rem << 32) | a[i];
            a[i] = static_cast<uint32_t>(v / d);
            rem = v % d;
        }
    }
    // Bit `pos` of a (0 beyond either end).
    static uint64_t bit(const std::vector<uint32_t>& a, int pos) {
        if (pos < 0 || pos >= static_cast<int>(a.size()) * 32) return 0;
        return (a[static_cast<size_t>(pos / 32)] >> (pos % 32)) & 1;
    }
    // g(e) = floor(a 2^-r) + 1.
    void set(int e, const std::vector<uint32_t>& a, int r) {
        unsigned __int128 g = 0;
        for (int i = 127; i >= 0; --i) g = (g << 1) | bit(a, r + i);
        g += 1;
        g_[2 * (e - kMinExp10)] = static_cast<uint64_t>(g >> 63);
        g_[2 * (e - kMinExp10) + 1] = static_cast<uint64_t>(g) & kMask63;
    }
};

inline const Pow10Table& pow10_table() {
    static const Pow10Table table;  // built on first use; thread-safe since C++11
    return table;
}

inline uint64_t mul_high(uint64_t a, uint64_t b) {
    return static_cast<uint64_t>((static_cast<unsigned __int128>(a) * b) >> 64);
}

// floor(g cp / 2^127), rounded to odd (the lowest bit set when bits were dropped).
inline uint64_t round_to_odd(uint64_t g1, uint64_t g0, uint64_t cp) {
    const uint64_t x1 = mul_high(g0, cp);
    const unsigned __int128 y = static_cast<unsigned __int128>(g1) * cp;
    const uint64_t y0 = static_cast<uint64_t>(y);
    const uint64_t y1 = static_cast<uint64_t>(y >> 64);
    const uint64_t z = (y0 >> 1) + x1;
    const uint64_t vbp = y1 + (z >> 63);
    return vbp | (((z & kMask63) + kMask63) >> 63);
}

// x = c 2^q (c the significand with its hidden bit, 2^52 <= c < 2^53) as f 10^e.
inline void to_decimal(const Pow10Table& table, uint64_t c, int q, uint64_t& f, int& e) {
    const uint64_t out = c & 1;  // an even c keeps its interval's bounds (round half to even)
    const uint64_t cb = c << 2;
    const uint64_t cbr = cb + 2;
    uint64_t cbl;
    int k;
    if (c != (uint64_t{1} << 52) || q == -1074) {
        cbl = cb - 2;
        k = flog10pow2(q);
    } else {  // a power of two: the gap below is half the gap above
        cbl = cb - 1;
        k = flog10_three_quarters_pow2(q);
    }
    const int h = q + flog2pow10(-k) + 2;
    const uint64_t g1 = table.g1(-k);
    const uint64_t g0 = table.g0(-k);
    const uint64_t vb = round_to_odd(g1, g0, cb << h);
    const uint64_t vbl = round_to_odd(g1, g0, cbl << h);
    const uint64_t vbr = round_to_odd(g1, g0, cbr << h);
    const uint64_t s = vb >> 2;
    if (s >= 100) {  // one digit fewer: s rounded down or up to a multiple of ten
        const uint64_t sp10 = 10 * (s / 10);
        const uint64_t tp10 = sp10 + 10;
        const bool upin = vbl + out <= sp10 << 2;
        const bool wpin = (tp10 << 2) + out <= vbr;
        if (upin != wpin) {
            f = upin ? sp10 : tp10;
            e = k;
            return;
        }
    }
    const uint64_t t = s + 1;
    const bool uin = vbl + out <= s << 2;
    const bool win = (t << 2) + out <= vbr;
    e = k;
    if (uin != win) {
        f = uin ? s : t;
        return;
    }
    const int64_t cmp = static_cast<int64_t>(vb - ((s + t) << 1));
    f = (cmp < 0 || (cmp == 0 && (s & 1) == 0)) ? s : t;
}

}  // namespace schubfach

// "00" "01" ... "99": two digits per lookup.
struct DigitPairs {
    char c[200];
    constexpr DigitPairs() : c() {
        for (int i = 0; i < 100; ++i) {
            c[2 * i] = static_cast<char>('0' + i / 10);
            c[2 * i + 1] = static_cast<char>('0' + i % 10);
        }
    }
};
inline constexpr DigitPairs kDigitPairs{};

inline void write_4_digits(uint32_t x, char* p) {
    std::memcpy(p, kDigitPairs.c + 2 * (x / 100), 2);
    std::memcpy(p + 2, kDigitPairs.c + 2 * (x % 100), 2);
}

inline void write_8_digits(uint32_t x, char* p) {
    write_4_digits(x / 10000, p);
    write_4_digits(x % 10000, p + 4);
}

// Bytes that format_double may write at `out`: its 24 characters and scratch beyond them (fixed-size
// copies, cheaper than copies of each field's own length; later fields overwrite the scratch).
constexpr size_t kFormatRoom = 48;

// `repr(x)` of a Python float, written to `out` (kFormatRoom bytes writable); returns its length.
inline int format_double(const schubfach::Pow10Table& table, double x, char* out) {
    uint64_t bits;
    std::memcpy(&bits, &x, sizeof bits);
    const bool neg = bits >> 63;
    const int biased = static_cast<int>((bits >> 52) & 0x7ff);
    const uint64_t mantissa = bits & ((uint64_t{1} << 52) - 1);
    if (biased == 0 && mantissa == 0) {  // over half the cells of a sparse signal column
        std::memcpy(out, "-0.0", 4);
        if (neg) return 4;
        std::memcpy(out, "0.0", 3);
        return 3;
    }
    if (biased == 0x7ff) {
        if (mantissa) {
            std::memcpy(out, "nan", 3);
            return 3;
        }
        std::memcpy(out, neg ? "-inf" : "inf", 3 + neg);
        return 3 + neg;
    }
    if (biased == 0) return format_double_to_chars(x, out);
    uint64_t f;  // below 10^17
    int e;
    schubfach::to_decimal(table, mantissa | (uint64_t{1} << 52), biased - 1075, f, e);
    // f as 17 digits with leading zeros, in three independent pieces.
    char buf[72];
    char* const digits = buf + 8;  // 8 bytes before them, read by the trailing-zero count
    const uint64_t hi = f / 100000000;
    digits[0] = static_cast<char>('0' + hi / 100000000);
    write_8_digits(static_cast<uint32_t>(hi % 100000000), digits + 1);
    write_8_digits(static_cast<uint32_t>(f - hi * 100000000), digits + 9);
    // f ~ x / 10^k >= c >= 2^52 > 10^15 (as 10^k <= 2^q): 16 or 17 digits, no loop to mispredict.
    const char* d = digits + (f < 10000000000000000ULL);
    char* end = digits + 17;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__ && defined(__GNUC__)
    // Schubfach may leave trailing zeros, which repr drops: counted a word of 8 digits at a time.
    for (;;) {
        uint64_t word;
        std::memcpy(&word, end - 8, 8);
        word ^= 0x3030303030303030ULL;  // '0' bytes become 0
        if (word) {
            const int zeros = __builtin_clzll(word) / 8;  // little-endian: the last digit is the top byte
            end -= zeros;
            e += zeros;
            break;
        }
        end -= 8;  // eight zeros (f has a non-zero digit, so this stops within 17 digits)
        e += 8;
    }
#else
    while (end[-1] == '0') {  // Schubfach may leave trailing zeros, which repr drops
        --end;
        ++e;
    }
#endif
    const int nd = static_cast<int>(end - d);
    const int decpt = e + nd;
    if (decpt <= -4 || decpt > 16) return static_cast<int>(layout_repr(neg, d, nd, decpt, out) - out);
    // The fixed layouts of layout_repr, with copies of fixed size (d has 17 readable bytes and more).
    std::memset(end, '0', 24);
    char* o = out;
    *o = '-';
    o += neg;
    if (decpt <= 0) {
        std::memcpy(o, "0.0000", 6);
        o += 2 - decpt;
        std::memcpy(o, d, 17);
        o += nd;
    } else if (decpt >= nd) {
        std::memcpy(o, d, 16);  // the digits, then zeros up to the decimal point
        o += decpt;
        std::memcpy(o, ".0", 2);
        o += 2;
    } else {
        std::memcpy(o, d, 16);
        o[decpt] = '.';
        std::memcpy(o + decpt + 1, d + decpt, 16);
        o += nd + 1;
    }
    return static_cast<int>(o - out);
}

// One column of the rows being written: row r of a number column at `f64[r * step]` (`i64`, `b`
// alike; the step in elements lets a column of a row-major matrix be read in place), of a text
// column at `str[r]`, of a numpy str column at `ucs4[r * width]` (`width` code points, trailing NULs
// dropped as `tolist` does; no NUL before another character, no surrogate, none past U+10FFFF).
struct Column {
    enum Kind : uint8_t { FLOAT64, INT64, BOOL, STRING, UCS4 } kind;
    const double* f64 = nullptr;
    const int64_t* i64 = nullptr;
    const uint8_t* b = nullptr;
    std::ptrdiff_t step = 1;
    std::vector<std::string_view> str;
    const uint32_t* ucs4 = nullptr;
    size_t width = 0;
};

inline bool needs_quotes(std::string_view s) {
    for (char c : s)
        if (c == ',' || c == '"' || c == '\r' || c == '\n') return true;
    return false;
}

inline char* write_string(std::string_view s, bool only_field, char* o) {
    if (s.empty()) {
        if (only_field) {  // csv.writer writes a row holding one empty string as ""
            *o++ = '"';
            *o++ = '"';
        }
        return o;
    }
    if (!needs_quotes(s)) {
        std::memcpy(o, s.data(), s.size());
        return o + s.size();
    }
    *o++ = '"';
    for (char c : s) {
        if (c == '"') *o++ = '"';
        *o++ = c;
    }
    *o++ = '"';
    return o;
}

// A numpy str value as UTF-8, quoted like write_string. Encoded in place after room for the opening
// quote, then quoted (its quotes doubled, from the end) or moved back.
inline char* write_ucs4(const uint32_t* code, size_t width, bool only_field, char* o) {
    size_t len = width;
    while (len && code[len - 1] == 0) --len;
    char* const start = o + 1;
    char* p = start;
    size_t quotes = 0;
    bool special = false;
    for (size_t i = 0; i < len; ++i) {
        const uint32_t cp = code[i];
        if (cp < 0x80) {
            quotes += cp == '"';
            special |= cp == ',' || cp == '"' || cp == '\r' || cp == '\n';
            *p++ = static_cast<char>(cp);
        } else if (cp < 0x800) {
            *p++ = static_cast<char>(0xC0 | (cp >> 6));
            *p++ = static_cast<char>(0x80 | (cp & 0x3F));
        } else if (cp < 0x10000) {
            *p++ = static_cast<char>(0xE0 | (cp >> 12));
            *p++ = static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
            *p++ = static_cast<char>(0x80 | (cp & 0x3F));
        } else {
            *p++ = static_cast<char>(0xF0 | (cp >> 18));
            *p++ = static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
            *p++ = static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
            *p++ = static_cast<char>(0x80 | (cp & 0x3F));
        }
    }
    const auto n = static_cast<size_t>(p - start);
    if (!special) {
        if (n == 0) return write_string({}, only_field, o);
        std::memmove(o, start, n);
        return o + n;
    }
    char* const end = start + n + quotes;
    for (char *src = start + n, *dst = end; src != start;) {  // double the quotes, back to front
        const char c = *--src;
        *--dst = c;
        if (c == '"') *--dst = '"';
    }
    *o = '"';
    *end = '"';
    return end + 1;
}

// An upper bound on the bytes write_rows writes for `rows` rows.
inline size_t max_bytes(const std::vector<Column>& cols, size_t rows) {
    size_t total = rows * (cols.size() * kMaxNumberField + 2);
    for (const Column& col : cols) {
        if (col.kind == Column::STRING)
            for (size_t r = 0; r < rows; ++r) total += 2 * col.str[r].size() + 2;  // quoted, doubled
        if (col.kind == Column::UCS4) total += rows * (4 * col.width + 2);  // 4 bytes a code point, 1 a quote
    }
    return total;
}

// The first `rows` rows of `cols` from `out` (room for max_bytes + kFormatRoom); returns the end of
// what was written.
inline char* write_rows(const std::vector<Column>& cols, size_t rows, char* out) {
    const schubfach::Pow10Table& table = schubfach::pow10_table();
    const bool single = cols.size() == 1;
    char* o = out;
    for (size_t r = 0; r < rows; ++r) {
        const auto at = static_cast<std::ptrdiff_t>(r);
        for (size_t c = 0; c < cols.size(); ++c) {
            if (c) *o++ = ',';
            const Column& col = cols[c];
            switch (col.kind) {
                case Column::FLOAT64:
                    o += format_double(table, col.f64[at * col.step], o);
                    break;
                case Column::INT64:
                    o = std::to_chars(o, o + kMaxDouble, col.i64[at * col.step]).ptr;
                    break;
                case Column::BOOL:
                    if (col.b[at * col.step]) {
                        std::memcpy(o, "True", 4);
                        o += 4;
                    } else {
                        std::memcpy(o, "False", 5);
                        o += 5;
                    }
                    break;
                case Column::STRING:
                    o = write_string(col.str[r], single, o);
                    break;
                case Column::UCS4:
                    o = write_ucs4(col.ucs4 + r * col.width, col.width, single, o);
                    break;
            }
        }
        *o++ = '\r';
        *o++ = '\n';
    }
    return o;
}

}  // namespace csvfmt
}  // namespace affinity
