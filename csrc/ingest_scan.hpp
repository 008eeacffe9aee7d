// The NDJSON reader's JSON scanner (ingest.hpp is the reader): strict and conservative, it parses
// a line's fields into Values and gives up (returns false) on anything it is not sure msgspec
// would read the same way; and RFC 3339 timestamps to epoch milliseconds.
#pragma once

#include "ingest_strings.hpp"

namespace affinity {
namespace ingest {

// ---- a strict, conservative JSON scanner -------------------------------------------------------
// Every parse function returns false when the line must go to the msgspec fallback.

enum Kind : uint8_t { ABSENT, NUL, STR, NUM, BOOL, OBJ, ARR };

// Trivially constructible (no std::string_view member): a line declares ~30 Values holding one.
struct Str {
    const char* ptr;
    size_t len;
    int chars;  // code points
    std::string_view view() const { return {ptr, len}; }
};

struct Num {
    bool is_int;
    int64_t i;
    double d;
};

struct Product {
    Str product_id, category, brand;
    double price, discount;
    int32_t quantity;
};

// Trivially constructible on purpose: a line declares ~30 of these, and only `kind` is reset.
struct Value {
    Kind kind;
    bool b;
    bool valid;  // OBJ / ARR holding valid product(s)
    Str s;
    Num n;
    uint32_t first, count;  // product(s): range in the scanner's item list
};

inline const Value kAbsentValue{};  // kind ABSENT

// The values of one object's fields, by field index. Only `seen` is initialised per object (a line
// holds ~30 Values); a field not seen reads as kAbsentValue.
template <int N>
struct Fields {
    static_assert(N <= 32, "seen is a 32-bit mask");
    Value v[N];
    uint32_t seen = 0;

    const Value& operator[](int i) const { return (seen >> i) & 1 ? v[i] : kAbsentValue; }
    // The value of field i, to be parsed, or nullptr when i was seen already (a duplicate key).
    Value* claim(int i) {
        if ((seen >> i) & 1) return nullptr;
        seen |= 1u << i;
        return &v[i];
    }
};

// Top-level fields the reader interprets; anything else is skipped (after a syntax check).
enum Field : int {
    F_TYPE, F_USER_ID, F_TIMESTAMP, F_EVENT_ID, F_CHANNEL, F_SESSION_ID, F_PRODUCT, F_PRODUCTS, F_REVENUE,
    F_DISCOUNT, F_COUPON, F_CURRENCY, F_ORDER_ID, F_CAMPAIGN_ID, F_GRANTED, F_URL, F_LIST_ID, F_CATEGORY,
    F_QUERY, F_CART_ID, F_WISHLIST_ID, F_APP_VERSION, F_MEDIUM, N_FIELDS
};

inline int field_of(std::string_view k) {
    switch (k.size()) {
        case 3: return is(k, "url") ? F_URL : -1;
        case 4: return is(k, "type") ? F_TYPE : -1;
        case 5: return is(k, "query") ? F_QUERY : -1;
        case 6: return is(k, "coupon") ? F_COUPON : is(k, "medium") ? F_MEDIUM : -1;
        case 7:
            switch (k[0]) {
                case 'u': return is(k, "user_id") ? F_USER_ID : -1;
                case 'p': return is(k, "product") ? F_PRODUCT : -1;
                case 'r': return is(k, "revenue") ? F_REVENUE : -1;
                case 'c': return is(k, "channel") ? F_CHANNEL : is(k, "cart_id") ? F_CART_ID : -1;
                case 'l': return is(k, "list_id") ? F_LIST_ID : -1;
                case 'g': return is(k, "granted") ? F_GRANTED : -1;
                default: return -1;
            }
        case 8:
            switch (k[0]) {
                case 'e': return is(k, "event_id") ? F_EVENT_ID : -1;
                case 'p': return is(k, "products") ? F_PRODUCTS : -1;
                case 'd': return is(k, "discount") ? F_DISCOUNT : -1;
                case 'c': return is(k, "currency") ? F_CURRENCY : is(k, "category") ? F_CATEGORY : -1;
                case 'o': return is(k, "order_id") ? F_ORDER_ID : -1;
                default: return -1;
            }
        case 9: return is(k, "timestamp") ? F_TIMESTAMP : -1;
        case 10: return is(k, "session_id") ? F_SESSION_ID : -1;
        case 11:
            switch (k[0]) {
                case 'c': return is(k, "campaign_id") ? F_CAMPAIGN_ID : -1;
                case 'w': return is(k, "wishlist_id") ? F_WISHLIST_ID : -1;
                case 'a': return is(k, "app_version") ? F_APP_VERSION : -1;
                default: return -1;
            }
        default: return -1;
    }
}

// Index of a product field, or -1.
inline int product_field_of(std::string_view k) {
    switch (k.size()) {
        case 10: return is(k, "product_id") ? 0 : -1;
        case 8:
            switch (k[0]) {
                case 'c': return is(k, "category") ? 1 : -1;
                case 'd': return is(k, "discount") ? 4 : -1;
                case 'q': return is(k, "quantity") ? 5 : -1;
                default: return -1;
            }
        case 5: return is(k, "brand") ? 2 : is(k, "price") ? 3 : -1;
        default: return -1;
    }
}

// Powers of ten exactly representable as doubles (10^22 is the largest).
inline constexpr double kPow10[23] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
                                      1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

// No token takes a '\n' (ws() stops at it, strings at any control character), so a scan never
// passes the end of its line, even when `end` lies beyond it.
class Scanner {
public:
    const char* p;
    const char* end;
    std::vector<Product>* items;
    const char* limit;  // end of the whole buffer: reads up to here are safe (see plain_run)

    Scanner(const char* b, const char* e, std::vector<Product>* it, const char* lim = nullptr)
        : p(b), end(e), items(it), limit(lim ? lim : e) {}

    // JSON whitespace but '\n', which ends the line: `end` may lie past it (see read_line).
    AFFINITY_INGEST_INLINE void ws() {
        while (p < end && static_cast<unsigned char>(*p) <= ' ' && (*p == ' ' || *p == '\t' || *p == '\r')) ++p;
    }

    // A string without escapes; validates UTF-8 and counts code points.
    AFFINITY_INGEST_INLINE bool string(Str& out) {
        if (p >= end || *p != '"') return false;
        const unsigned char* start = reinterpret_cast<const unsigned char*>(p + 1);
        const unsigned char* lim = reinterpret_cast<const unsigned char*>(limit);
        const unsigned char* q = plain_run(start, lim);
        if (AFFINITY_LIKELY(q < reinterpret_cast<const unsigned char*>(end) && *q == '"')) {
            out.ptr = reinterpret_cast<const char*>(start);
            out.len = static_cast<size_t>(q - start);
            out.chars = static_cast<int>(q - start);
            p = reinterpret_cast<const char*>(q + 1);
            return true;
        }
        return string_rest(out, start, q);
    }

    // string() past the first byte that is not plain ASCII: UTF-8 validation and code point count.
    bool string_rest(Str& out, const unsigned char* start, const unsigned char* q) {
        const unsigned char* e = reinterpret_cast<const unsigned char*>(end);
        const unsigned char* lim = reinterpret_cast<const unsigned char*>(limit);
        int chars = static_cast<int>(q - start);
        while (true) {
            if (q >= e) return false;
            unsigned char c = *q;
            if (c == '"') break;
            if (c < 0x80) return false;  // backslash or control character
            int extra;
            uint32_t cp;
            if (c >= 0xC2 && c <= 0xDF) { extra = 1; cp = c & 0x1F; }
            else if (c >= 0xE0 && c <= 0xEF) { extra = 2; cp = c & 0x0F; }
            else if (c >= 0xF0 && c <= 0xF4) { extra = 3; cp = c & 0x07; }
            else return false;
            if (e - q <= extra) return false;
            for (int k = 1; k <= extra; ++k) {
                if ((q[k] & 0xC0) != 0x80) return false;
                cp = (cp << 6) | (q[k] & 0x3F);
            }
            if ((extra == 2 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
                (extra == 3 && (cp < 0x10000 || cp > 0x10FFFF)))
                return false;
            q += extra + 1;
            ++chars;
            const unsigned char* r = plain_run(q, lim);
            chars += static_cast<int>(r - q);
            q = r;
        }
        out.ptr = reinterpret_cast<const char*>(start);
        out.len = static_cast<size_t>(q - start);
        out.chars = chars;
        p = reinterpret_cast<const char*>(q + 1);
        return true;
    }

    // JSON number grammar; integers must fit 18 digits, floats must parse finite and normal-ish.
    // Integers are accumulated exactly; a decimal without exponent whose digits fit 2^53 and that
    // has at most 22 fraction digits is m / 10^k, one correctly rounded IEEE division (exact like
    // from_chars); everything else goes to std::from_chars.
    AFFINITY_INGEST_INLINE bool number(Num& out) {
        const char* s = p;
        const bool neg = p < end && *p == '-';
        p += neg;
        if (p >= end) return false;
        uint64_t m = 0;
        int nd = 0;  // digits accumulated in m (wraps harmlessly past 19; then unused)
        if (*p == '0') {
            ++p;
        } else if (*p >= '1' && *p <= '9') {
            while (p < end && *p >= '0' && *p <= '9') {
                m = m * 10 + static_cast<uint64_t>(*p - '0');
                ++p;
                ++nd;
            }
        } else {
            return false;
        }
        bool is_int = true, simple = true;
        int frac = 0;
        if (p < end && *p == '.') {
            is_int = false;
            ++p;
            const char* d = p;
            while (p < end && *p >= '0' && *p <= '9') {
                m = m * 10 + static_cast<uint64_t>(*p - '0');
                ++p;
            }
            frac = static_cast<int>(p - d);
            nd += frac;
            if (frac == 0) return false;
        }
        if (p < end && (*p == 'e' || *p == 'E')) {
            is_int = false;
            simple = false;
            ++p;
            if (p < end && (*p == '+' || *p == '-')) ++p;
            const char* d = p;
            while (p < end && *p >= '0' && *p <= '9') ++p;
            if (p == d) return false;
        }
        if (p - s > 40) return false;
        out.is_int = is_int;
        if (is_int) {
            if (p - s > 18) return false;  // then m < 10^18: no overflow
            out.i = neg ? -static_cast<int64_t>(m) : static_cast<int64_t>(m);
            out.d = static_cast<double>(out.i);
            return true;
        }
        if (simple && nd <= 19 && frac <= 22 && m <= (uint64_t{1} << 53)) {
            const double d = static_cast<double>(m) / kPow10[frac];
            out.d = neg ? -d : d;
        } else {
            auto r = std::from_chars(s, p, out.d);
            if (r.ec != std::errc() || r.ptr != p) return false;
        }
        if (!std::isfinite(out.d)) return false;
        if (out.d != 0.0 && std::fabs(out.d) < 1e-300) return false;
        return true;
    }

    bool literal(const char* word, size_t n) {
        if (static_cast<size_t>(end - p) < n || std::memcmp(p, word, n) != 0) return false;
        p += n;
        return true;
    }

    // Any JSON value, syntax-checked and thrown away. Strings with escapes are accepted only for
    // the simple escapes (no \u, whose surrogate rules we leave to msgspec).
    bool skip(int depth) {
        if (depth > kMaxDepth) return false;
        ws();
        if (p >= end) return false;
        switch (*p) {
            case '"': return skip_string();
            case '{': {
                ++p;
                ws();
                if (p < end && *p == '}') { ++p; return true; }
                while (true) {
                    ws();
                    if (!skip_string()) return false;
                    ws();
                    if (p >= end || *p != ':') return false;
                    ++p;
                    if (!skip(depth + 1)) return false;
                    ws();
                    if (p < end && *p == ',') { ++p; continue; }
                    if (p < end && *p == '}') { ++p; return true; }
                    return false;
                }
            }
            case '[': {
                ++p;
                ws();
                if (p < end && *p == ']') { ++p; return true; }
                while (true) {
                    if (!skip(depth + 1)) return false;
                    ws();
                    if (p < end && *p == ',') { ++p; continue; }
                    if (p < end && *p == ']') { ++p; return true; }
                    return false;
                }
            }
            case 't': return literal("true", 4);
            case 'f': return literal("false", 5);
            case 'n': return literal("null", 4);
            default: {
                Num n;
                return number(n);
            }
        }
    }

    bool skip_string() {
        if (p >= end || *p != '"') return false;
        Str s;
        const char* save = p;
        if (string(s)) return true;
        // Slow path: allow simple escapes, still validating UTF-8 piecewise.
        p = save + 1;
        while (p < end) {
            unsigned char c = static_cast<unsigned char>(*p);
            if (c == '"') { ++p; return true; }
            if (c == '\\') {
                if (p + 1 >= end) return false;
                char e = p[1];
                if (e != '"' && e != '\\' && e != '/' && e != 'b' && e != 'f' && e != 'n' && e != 'r' &&
                    e != 't')
                    return false;
                p += 2;
                continue;
            }
            if (c < 0x20) return false;
            if (c < 0x80) { ++p; continue; }
            // re-validate this multi-byte char with the strict routine on a fake one-char string
            int extra = c >= 0xF0 ? 3 : c >= 0xE0 ? 2 : 1;
            if (end - p <= extra) return false;
            char buf[6] = {'"', 0, 0, 0, 0, '"'};
            std::memcpy(buf + 1, p, static_cast<size_t>(extra + 1));
            Scanner one(buf, buf + extra + 3, nullptr, buf + extra + 3);
            Str tmp;
            if (!one.string(tmp) || one.p != buf + extra + 3) return false;
            p += extra + 1;
        }
        return false;
    }

    // A value of a top-level field or product field: classify it, parse what we interpret.
    bool value(Value& v, bool product_like, int depth) {
        v.valid = false;
        ws();
        if (p >= end) return false;
        char c = *p;
        if (c == '"') {
            v.kind = STR;
            return string(v.s);
        }
        if (c == 'n') {
            v.kind = NUL;
            return literal("null", 4);
        }
        if (c == 't') {
            v.kind = BOOL;
            v.b = true;
            return literal("true", 4);
        }
        if (c == 'f') {
            v.kind = BOOL;
            v.b = false;
            return literal("false", 5);
        }
        if (c == '{') {
            v.kind = OBJ;
            if (!product_like) return skip(depth);
            Product prod;
            if (!product(prod, v.valid, depth)) return false;
            if (v.valid) {
                v.first = static_cast<uint32_t>(items->size());
                items->push_back(prod);
            }
            return true;
        }
        if (c == '[') {
            v.kind = ARR;
            if (!product_like) return skip(depth);
            return product_list(v, depth);
        }
        v.kind = NUM;
        return number(v.n);
    }

    // value(v, false, depth) with strings and numbers, most fields' values, parsed inline.
    AFFINITY_INGEST_INLINE bool flat_value(Value& v, int depth) {
        if (AFFINITY_LIKELY(p < end)) {
            const char c = *p;
            if (c == '"') {
                v.valid = false;
                v.kind = STR;
                return string(v.s);
            }
            if ((c >= '0' && c <= '9') || c == '-') {
                v.valid = false;
                v.kind = NUM;
                return number(v.n);
            }
        }
        return value(v, false, depth);
    }

    static bool is_amount(const Value& v) {
        return v.kind == NUM && v.n.d >= 0.0 && v.n.d <= kMaxAmount;
    }
    static bool is_id(const Value& v) {
        return v.kind == STR && v.s.chars >= 1 && v.s.chars <= kMaxIdChars;
    }

    // {"product_id":..,"category":..,"brand":..,"price":..,"discount":..,"quantity":..}
    bool product(Product& out, bool& valid, int depth) {
        if (depth > kMaxDepth) return false;
        ++p;
        Fields<6> f;
        ws();
        if (p < end && *p == '}') {
            ++p;
            valid = false;
            return true;
        }
        while (true) {
            ws();
            Str key;
            if (!string(key)) return false;
            ws();
            if (p >= end || *p != ':') return false;
            ++p;
            const int idx = product_field_of(key.view());
            if (idx < 0) {
                if (!skip(depth + 1)) return false;
            } else {
                Value* v = f.claim(idx);
                if (!v) return false;  // duplicate key
                if (!flat_value(*v, depth + 1)) return false;
            }
            ws();
            if (p < end && *p == ',') { ++p; continue; }
            if (p < end && *p == '}') { ++p; break; }
            return false;
        }
        valid = is_id(f[0]) && is_id(f[1]) && is_id(f[2]) && is_amount(f[3]) &&
                (f[4].kind == ABSENT || f[4].kind == NUL || is_amount(f[4])) &&
                (f[5].kind == ABSENT ||
                 (f[5].kind == NUM && f[5].n.is_int && f[5].n.i >= 1 && f[5].n.i <= 1000000));
        if (valid) {
            out.product_id = f[0].s;
            out.category = f[1].s;
            out.brand = f[2].s;
            out.price = f[3].n.d;
            out.discount = f[4].kind == NUM ? f[4].n.d : NAN;
            out.quantity = f[5].kind == NUM ? static_cast<int32_t>(f[5].n.i) : 1;
        }
        return true;
    }

    bool product_list(Value& v, int depth) {
        ++p;
        v.first = static_cast<uint32_t>(items->size());
        v.count = 0;
        v.valid = true;
        ws();
        if (p < end && *p == ']') {
            ++p;
            return true;
        }
        while (true) {
            ws();
            if (p < end && *p == '{') {
                Product prod;
                bool ok = false;
                if (!product(prod, ok, depth + 1)) return false;
                if (ok) items->push_back(prod);
                v.valid = v.valid && ok;
            } else {
                if (!skip(depth + 1)) return false;
                v.valid = false;
            }
            ws();
            if (p < end && *p == ',') { ++p; continue; }
            if (p < end && *p == ']') { ++p; break; }
            return false;
        }
        v.count = static_cast<uint32_t>(items->size()) - v.first;
        return true;
    }
};

// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
inline int64_t days_from_civil(int64_t y, int64_t m, int64_t d) {
    y -= m <= 2;
    const int64_t era = (y >= 0 ? y : y - 399) / 400;
    const int64_t yoe = y - era * 400;
    const int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    const int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

// The day numbers of the 1st of the last months parse_rfc3339_ms met, direct-mapped by month:
// events mostly fall in a few months, and days_from_civil costs divisions.
struct MonthCache {
    static constexpr int kMonths = 16;
    int64_t ym[kMonths], first_day[kMonths];
    MonthCache() {
        for (int i = 0; i < kMonths; ++i) ym[i] = -1, first_day[i] = 0;
    }
};

// YYYY-MM-DDTHH:MM:SS[.f{1,6}](Z|+HH:MM|-HH:MM), the shape RFC 3339 producers emit; anything else
// (lower-case separators, more than 6 fraction digits that msgspec would round, ...) is left to msgspec.
inline bool parse_rfc3339_ms(std::string_view s, int64_t& ms, MonthCache& month) {
    const size_t n = s.size();
    if (n < 20) return false;
    const char* c = s.data();
    // value of the k digits at c[at..]; `bad` collects any non-digit (unsigned wrap makes it > 9)
    unsigned bad = 0;
    auto num = [&](size_t at, size_t k) {
        int v = 0;
        for (size_t i = at; i < at + k; ++i) {
            const unsigned d = static_cast<unsigned>(static_cast<unsigned char>(c[i])) - '0';
            bad |= d > 9;
            v = v * 10 + static_cast<int>(d);
        }
        return v;
    };
    const int y = num(0, 4), mo = num(5, 2), d = num(8, 2), h = num(11, 2), mi = num(14, 2), se = num(17, 2);
    if (bad || c[4] != '-' || c[7] != '-' || c[10] != 'T' || c[13] != ':' || c[16] != ':') return false;
    static constexpr int kDays[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (y < 1 || mo < 1 || mo > 12 || d < 1 || h > 23 || mi > 59 || se > 59) return false;
    if (d > kDays[mo - 1] &&
        !(mo == 2 && d == 29 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0)))  // leap day
        return false;
    size_t i = 19;
    int frac_ms = 0;  // the first 3 fraction digits (padded): microseconds / 1000, rounded down
    if (c[i] == '.') {  // n >= 20, so c[19] exists
        ++i;
        size_t k = 0;
        while (i + k < n && c[i + k] >= '0' && c[i + k] <= '9') ++k;
        if (k < 1 || k > 6) return false;
        frac_ms = num(i, k < 3 ? k : 3);
        for (size_t z = k; z < 3; ++z) frac_ms *= 10;
        i += k;
    }
    int offset_s = 0;
    if (i + 1 == n && c[i] == 'Z') {
        offset_s = 0;
    } else if (i + 6 == n && (c[i] == '+' || c[i] == '-') && c[i + 3] == ':') {
        const int oh = num(i + 1, 2), om = num(i + 4, 2);
        if (bad || oh > 23 || om > 59) return false;
        offset_s = (oh * 3600 + om * 60) * (c[i] == '-' ? -1 : 1);
    } else {
        return false;
    }
    const int64_t ym = int64_t{y} * 12 + (mo - 1);
    const int at = static_cast<int>(ym % MonthCache::kMonths);
    if (ym != month.ym[at]) {
        month.first_day[at] = days_from_civil(y, mo, 1);
        month.ym[at] = ym;
    }
    const int64_t secs = (month.first_day[at] + d - 1) * 86400 + h * 3600 + mi * 60 + se - offset_s;
    ms = secs * 1000 + frac_ms;
    return true;
}

}  // namespace ingest
}  // namespace affinity
