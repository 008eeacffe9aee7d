// NDJSON -> columnar events, without Python. The reader only commits lines it fully understands
// and validates exactly like the msgspec schema in affinity_sdk/events.py; every line it is unsure
// about (any schema failure, escapes, odd numbers or datetimes, duplicate keys, ...) is flagged, and
// Python decodes those with msgspec, so the two paths cannot disagree on semantics.
#pragma once

#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <new>
#include <string_view>
#include <utility>
#include <vector>

#if defined(__linux__)
#include <sys/mman.h>
#endif

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace affinity {
namespace ingest {

constexpr int64_t kMinTsMs = -2208988800000LL;  // 1900-01-01
constexpr int64_t kMaxTsMs = 7258118400000LL;   // 2200-01-01
constexpr double kMaxAmount = 1e12;
constexpr int kMaxIdChars = 512;
constexpr int kMaxDepth = 64;

// Event type codes: index in affinity_sdk.events.EVENT_TYPES (append-only there and here).
enum EventType : int {
    PAGE_VIEWED, PRODUCT_VIEWED, PRODUCT_LIST_VIEWED, PRODUCTS_SEARCHED, PRODUCT_ADDED, PRODUCT_REMOVED,
    PRODUCT_ADDED_TO_WISHLIST, CART_VIEWED, CHECKOUT_STARTED, COUPON_APPLIED, ORDER_COMPLETED,
    ORDER_REFUNDED, EMAIL_OPENED, EMAIL_CLICKED, SMS_CLICKED, PUSH_OPENED, UNSUBSCRIBED, APP_INSTALLED,
    APP_OPENED, APP_UNINSTALLED, CONSENT_CHANGED, N_EVENT_TYPES
};
inline constexpr std::string_view kEventTypeNames[N_EVENT_TYPES] = {
    "page_viewed", "product_viewed", "product_list_viewed", "products_searched", "product_added",
    "product_removed", "product_added_to_wishlist", "cart_viewed", "checkout_started", "coupon_applied",
    "order_completed", "order_refunded", "email_opened", "email_clicked", "sms_clicked", "push_opened",
    "unsubscribed", "app_installed", "app_opened", "app_uninstalled", "consent_changed"};
// Index = channel code (events.CHANNELS): codes are stored, so names are only ever appended.
inline constexpr std::string_view kChannelNames[7] = {"web", "app", "email", "sms", "push", "store", "whatsapp"};

inline uint8_t default_channel(int type) {
    switch (type) {
        case EMAIL_OPENED: case EMAIL_CLICKED: return 2;
        case SMS_CLICKED: return 3;
        case PUSH_OPENED: return 4;
        case APP_INSTALLED: case APP_OPENED: case APP_UNINSTALLED: return 1;
        default: return 0;
    }
}

inline uint64_t fnv1a(std::string_view s) {
    uint64_t h = 0xCBF29CE484222325ULL;
    for (unsigned char c : s) h = (h ^ c) * 0x100000001B3ULL;
    return h ? h : 1;
}

inline uint64_t fast_hash(std::string_view s) {
    uint64_t h = 0x9E3779B97F4A7C15ULL ^ (s.size() * 0xFF51AFD7ED558CCDULL);
    const char* p = s.data();
    size_t n = s.size();
    while (n >= 8) {
        uint64_t w;
        std::memcpy(&w, p, 8);
        h = (h ^ w) * 0xC2B2AE3D27D4EB4FULL;
        h ^= h >> 29;
        p += 8;
        n -= 8;
    }
    uint64_t w = 0;
    std::memcpy(&w, p, n);
    h = (h ^ w) * 0x165667B19E3779F9ULL;
    h ^= h >> 32;
    return h;
}

#if defined(__GNUC__)
#define AFFINITY_INGEST_INLINE inline __attribute__((always_inline))
#define AFFINITY_LIKELY(x) __builtin_expect(!!(x), 1)
#else
#define AFFINITY_INGEST_INLINE inline
#define AFFINITY_LIKELY(x) (x)
#endif

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define AFFINITY_INGEST_LE 1
#else
#define AFFINITY_INGEST_LE 0
#endif

inline int lowest_set_bit(uint64_t w) {
#if defined(__GNUC__)
    return __builtin_ctzll(w);
#else
    int i = 0;
    while (!(w & 1)) w >>= 1, ++i;
    return i;
#endif
}

inline uint64_t load8(const char* p) {
    uint64_t w;
    std::memcpy(&w, p, 8);
    return w;
}

// Byte equality of two ranges of length n, with word loads (no libc call for short keys).
AFFINITY_INGEST_INLINE bool same_bytes(const char* a, const char* b, size_t n) {
    if (n >= 8) {
        size_t i = 0;
        for (; i + 8 < n; i += 8)
            if (load8(a + i) != load8(b + i)) return false;
        return load8(a + n - 8) == load8(b + n - 8);
    }
    for (size_t i = 0; i < n; ++i)
        if (a[i] != b[i]) return false;
    return true;
}

// `k` equals the literal `lit` (compile-time length).
template <size_t N>
AFFINITY_INGEST_INLINE bool is(std::string_view k, const char (&lit)[N]) {
    return k.size() == N - 1 && same_bytes(k.data(), lit, N - 1);
}

// First byte at or after q that is '"', '\\', a control character or not ASCII, or `limit`.
// `limit` is the end of the whole buffer, so the scan may look past the end of the current line;
// callers check the result against the line end (a line always ends before its '\n').
AFFINITY_INGEST_INLINE const unsigned char* plain_run(const unsigned char* q, const unsigned char* limit) {
#if defined(__SSE2__)
    const __m128i quote = _mm_set1_epi8('"'), bslash = _mm_set1_epi8('\\'), space = _mm_set1_epi8(0x20);
    while (limit - q >= 16) {
        const __m128i x = _mm_loadu_si128(reinterpret_cast<const __m128i*>(q));
        // signed compare: bytes >= 0x80 are negative, so "< 0x20" catches them as well
        const __m128i m = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(x, quote), _mm_cmpeq_epi8(x, bslash)),
                                       _mm_cmplt_epi8(x, space));
        const unsigned mask = static_cast<unsigned>(_mm_movemask_epi8(m));
        if (mask) return q + lowest_set_bit(mask);
        q += 16;
    }
#elif AFFINITY_INGEST_LE
    constexpr uint64_t ones = 0x0101010101010101ULL, high = 0x8080808080808080ULL;
    while (limit - q >= 8) {
        uint64_t x;
        std::memcpy(&x, q, 8);
        const uint64_t xq = x ^ (ones * '"'), xb = x ^ (ones * '\\');
        // exact for the lowest flagged byte (borrows only run upwards from a true hit)
        const uint64_t m = (x | ((xq - ones) & ~xq) | ((xb - ones) & ~xb) | ((x - ones * 0x20) & ~x)) & high;
        if (m) return q + lowest_set_bit(m) / 8;
        q += 8;
    }
#endif
    while (q < limit && *q >= 0x20 && *q < 0x80 && *q != '"' && *q != '\\') ++q;
    return q;
}

// An array of `n` default-constructed T (trivially destructible), 64-byte aligned; one of 2 MB or
// more is 2 MB aligned and, on Linux, asks for transparent huge pages: an interner table of 10^5+
// names is read at random, and with 4 KB pages most lookups would miss the TLB as well as the cache.
template <class T>
class SlotArray {
public:
    explicit SlotArray(size_t n) : n_(n), align_(n * sizeof(T) >= kHuge ? kHuge : 64) {
        const size_t bytes = (n * sizeof(T) + align_ - 1) / align_ * align_;
        data_ = static_cast<T*>(::operator new(bytes, std::align_val_t(align_)));
#if defined(__linux__) && defined(MADV_HUGEPAGE)
        if (align_ == kHuge) madvise(data_, bytes, MADV_HUGEPAGE);  // a hint: failure is harmless
#endif
        for (size_t i = 0; i < n; ++i) new (data_ + i) T();
    }
    ~SlotArray() { ::operator delete(data_, std::align_val_t(align_)); }
    SlotArray(const SlotArray&) = delete;
    SlotArray& operator=(const SlotArray&) = delete;

    void swap(SlotArray& other) noexcept {
        std::swap(data_, other.data_);
        std::swap(n_, other.n_);
        std::swap(align_, other.align_);
    }
    T& operator[](size_t i) { return data_[i]; }
    const T& operator[](size_t i) const { return data_[i]; }
    size_t size() const { return n_; }
    const T* begin() const { return data_; }
    const T* end() const { return data_ + n_; }

private:
    static constexpr size_t kHuge = size_t{1} << 21;
    T* data_;
    size_t n_, align_;
};

// Strings -> dense local codes in first-seen order. Open addressing; a slot keeps the hash, the
// length and (for keys of up to 16 bytes) the bytes themselves, so a lookup of a short key touches
// one slot and never the input buffer. Names are views into the input buffer, or, for an interner
// that `owns` them (one that outlives its input: a reader fed chunk after chunk), into its own
// arena, copied once when first seen.
class LocalInterner {
public:
    std::vector<std::string_view> names;
    std::vector<int64_t> first;  // where each name was first seen (slot or item index)

    explicit LocalInterner(bool owns = false) : table_(1024), mask_(1023), owns_(owns) {}

    // Forget every name but keep the table's memory: a scratch interner reused chunk after chunk
    // (fresh tables would be fresh pages, zeroed by the kernel on first touch, every chunk).
    void clear() {
        for (size_t i = 0; i < table_.size(); ++i) table_[i].code = -1;
        names.clear();
        first.clear();
        arena_.clear();
        free_ = nullptr;
        left_ = 0;
    }

    // A string with its hash and (up to 16 bytes) its bytes as words: what a lookup compares, worked
    // out once for both prefetch() and intern().
    struct Key {
        std::string_view s;
        uint64_t hash, w0, w1;
    };

    // `limit`, when given, is the end of the buffer holding `s`: 16 bytes may be read from s.data()
    // when they lie before it.
    static AFFINITY_INGEST_INLINE Key key(std::string_view s, const char* limit = nullptr) {
        Key k{s, 0, 0, 0};
        if (s.size() <= 16) {
            load16(s.data(), s.size(), limit, k.w0, k.w1);
            k.hash = mix(k.w0, k.w1, s.size());
        } else {
            k.hash = fast_hash(s);
        }
        return k;
    }

    // Hint the slot of `k` into cache ahead of intern(k, ...): a table of 10^5+ names lives in
    // main memory, and the lookup is otherwise one cache miss per event.
    AFFINITY_INGEST_INLINE void prefetch(const Key& k) const {
#if defined(__GNUC__)
        __builtin_prefetch(&table_[k.hash & mask_]);
#else
        (void)k;
#endif
    }
    AFFINITY_INGEST_INLINE void prefetch(std::string_view s, const char* limit) const { prefetch(key(s, limit)); }

    AFFINITY_INGEST_INLINE int32_t intern(const Key& k, int64_t where) {
        const size_t n = k.s.size();
        size_t i = k.hash & mask_;
        while (true) {
            const Slot& sl = table_[i];
            if (sl.code < 0) break;
            if (sl.hash == k.hash && sl.len == n &&
                (n <= 16 ? (sl.w0 == k.w0 && sl.w1 == k.w1) : same_bytes(names[sl.code].data(), k.s.data(), n)))
                return sl.code;
            i = (i + 1) & mask_;
        }
        return add(k, i, where);
    }
    int32_t intern(std::string_view s, int64_t where, const char* limit = nullptr) {
        return intern(key(s, limit), where);
    }

private:
    struct Slot {
        uint64_t hash = 0, w0 = 0, w1 = 0;
        uint32_t len = 0;
        int32_t code = -1;
    };
    SlotArray<Slot> table_;
    size_t mask_;
    bool owns_;
    std::vector<std::unique_ptr<char[]>> arena_;
    char* free_ = nullptr;
    size_t left_ = 0;

    // A new name in the free slot i (the lookup's miss, out of its inlined path).
    int32_t add(const Key& k, size_t i, int64_t where) {
        const int32_t code = static_cast<int32_t>(names.size());
        table_[i] = Slot{k.hash, k.w0, k.w1, static_cast<uint32_t>(k.s.size()), code};
        names.push_back(owns_ ? keep(k.s) : k.s);
        first.push_back(where);
        if (names.size() * 2 > table_.size()) grow();
        return code;
    }

    std::string_view keep(std::string_view s) {
        constexpr size_t kBlock = 1 << 16;
        if (s.size() > left_) {
            const size_t n = s.size() > kBlock ? s.size() : kBlock;
            arena_.emplace_back(new char[n]);
            free_ = arena_.back().get();
            left_ = n;
        }
        if (!s.empty()) std::memcpy(free_, s.data(), s.size());
        const std::string_view kept(free_, s.size());
        free_ += s.size();
        left_ -= s.size();
        return kept;
    }

    static AFFINITY_INGEST_INLINE void load16(const char* p, size_t n, const char* limit, uint64_t& w0,
                                              uint64_t& w1) {
#if AFFINITY_INGEST_LE
        if (limit && limit - p >= 16) {
            w0 = load8(p);
            w1 = load8(p + 8);
            if (n < 8) {
                w0 &= n ? ~0ULL >> (64 - 8 * n) : 0;
                w1 = 0;
            } else if (n < 16) {
                w1 &= n > 8 ? ~0ULL >> (64 - 8 * (n - 8)) : 0;
            }
            return;
        }
#endif
        unsigned char buf[16] = {};
        if (n) std::memcpy(buf, p, n);
        std::memcpy(&w0, buf, 8);
        std::memcpy(&w1, buf + 8, 8);
    }

    static AFFINITY_INGEST_INLINE uint64_t mix(uint64_t w0, uint64_t w1, size_t n) {
        uint64_t h = (w0 ^ 0x9E3779B97F4A7C15ULL) * 0xBF58476D1CE4E5B9ULL;
        h ^= h >> 31;
        h = (h ^ w1 ^ (n * 0xFF51AFD7ED558CCDULL)) * 0x94D049BB133111EBULL;
        h ^= h >> 29;
        h *= 0xC2B2AE3D27D4EB4FULL;
        h ^= h >> 32;
        return h;
    }

    void grow() {
        SlotArray<Slot> bigger(table_.size() * 2);
        const size_t mask = bigger.size() - 1;
        for (const Slot& sl : table_) {
            if (sl.code < 0) continue;
            size_t i = sl.hash & mask;
            while (bigger[i].code >= 0) i = (i + 1) & mask;
            bigger[i] = sl;
        }
        table_.swap(bigger);
        mask_ = mask;
    }
};

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

// ---- the reader --------------------------------------------------------------------------------

enum Status : uint8_t { OK = 0, FLAGGED = 1 };

// std::allocator whose value-less construct() default-initialises (leaves scalars as they are), so
// a Column grows by resize() without zeroing memory the reader is about to write anyway.
template <class T>
struct UninitAllocator : std::allocator<T> {
    template <class U>
    struct rebind {
        using other = UninitAllocator<U>;
    };
    UninitAllocator() = default;
    template <class U>
    UninitAllocator(const UninitAllocator<U>&) noexcept {}
    template <class U>
    void construct(U* p) noexcept {
        ::new (static_cast<void*>(p)) U;
    }
    template <class U, class... A>
    void construct(U* p, A&&... a) {
        ::new (static_cast<void*>(p)) U(std::forward<A>(a)...);
    }
};
template <class T>
using Column = std::vector<T, UninitAllocator<T>>;

struct Columns {
    // one slot per non-blank line
    Column<int64_t> line, begin, end, user, ts_ms;
    Column<uint8_t> status, event_type, channel, has_coupon;
    Column<double> revenue, discount;
    Column<int32_t> campaign;
    Column<uint64_t> event_id;
    Column<int8_t> consent;
    // one row per product line of committed slots
    Column<int64_t> item_slot;
    Column<int32_t> item_product, item_category, item_brand, item_quantity;
    Column<double> item_price, item_discount;
    LocalInterner users, products, categories, brands, campaigns;
    MonthCache month;  // of the timestamps read

    // `owns_names`: the interners copy their names (see LocalInterner), so this object can read
    // chunk after chunk, codes and first-seen order continuing across chunks.
    explicit Columns(bool owns_names = false)
        : users(owns_names), products(owns_names), categories(owns_names), brands(owns_names),
          campaigns(owns_names) {}

    // A committed slot's user is interned a few slots later (in order, so codes stay first-seen):
    // by then the interner slot prefetched when the user id was parsed is in cache, where an
    // immediate lookup in a table of 10^5+ users waits for main memory on most events.
    // `id` is the key prefetched when the line's user id was parsed.
    void defer_user(const LocalInterner::Key& id, int64_t slot) {
        Pending& next = pending_[pending_end_ % kPending];
        if (pending_end_ - pending_begin_ == kPending) intern_oldest();
        next = Pending{id, slot};
        ++pending_end_;
    }

    // The same for a product line's product, category and brand (the product table outgrows the
    // caches too); the codes go to the item row `at`, whose code columns get placeholders now.
    void defer_item(const Product& pr, int64_t at, const char* limit) {
        item_product[static_cast<size_t>(at)] = -1;
        item_category[static_cast<size_t>(at)] = -1;
        item_brand[static_cast<size_t>(at)] = -1;
        const auto product = LocalInterner::key(pr.product_id.view(), limit);
        products.prefetch(product);
        PendingItem& next = items_[items_end_ % kPending];
        if (items_end_ - items_begin_ == kPending) intern_oldest_item();
        next = PendingItem{product, LocalInterner::key(pr.category.view(), limit),
                           LocalInterner::key(pr.brand.view(), limit), at};
        ++items_end_;
    }

    // Intern every deferred user and product line; call before the input buffer goes away.
    void flush_deferred() {
        while (pending_begin_ < pending_end_) intern_oldest();
        while (items_begin_ < items_end_) intern_oldest_item();
    }

    // f(column) for every slot column, and for every item column: the one list of each that
    // clearing, sizing and reserving go through.
    template <class F>
    void each_slot_column(F f) {
        f(line), f(begin), f(end), f(user), f(ts_ms), f(status), f(event_type), f(channel), f(has_coupon);
        f(revenue), f(discount), f(campaign), f(event_id), f(consent);
    }
    template <class F>
    void each_item_column(F f) {
        f(item_slot), f(item_product), f(item_category), f(item_brand), f(item_quantity), f(item_price);
        f(item_discount);
    }

    // Empty the row columns (the interners keep their names).
    void clear_rows() {
        each_slot_column([](auto& v) { v.clear(); });
        each_item_column([](auto& v) { v.clear(); });
    }

    // Size the row columns to `n` slots and the item columns to `n` rows; new elements are
    // uninitialised (the reader writes every column of every slot and row it keeps).
    void resize_rows(size_t n) {
        each_slot_column([n](auto& v) { v.resize(n); });
    }
    void resize_items(size_t n) {
        each_item_column([n](auto& v) { v.resize(n); });
    }

    // The placeholder values of a slot left to the caller (status FLAGGED).
    void flag(size_t slot) {
        status[slot] = FLAGGED;
        user[slot] = -1;
        event_type[slot] = 0;
        ts_ms[slot] = 0;
        channel[slot] = 0;
        revenue[slot] = NAN;
        discount[slot] = NAN;
        has_coupon[slot] = 0;
        campaign[slot] = -1;
        event_id[slot] = 0;
        consent[slot] = -1;
    }

    void reserve(size_t n) {
        each_slot_column([n](auto& v) { v.reserve(n); });
        each_item_column([n](auto& v) { v.reserve(n); });
    }

private:
    struct Pending {
        LocalInterner::Key id;
        int64_t slot;
    };
    struct PendingItem {
        LocalInterner::Key product, category, brand;
        int64_t at;
    };
    static constexpr size_t kPending = 8;
    Pending pending_[kPending];
    size_t pending_begin_ = 0, pending_end_ = 0;
    PendingItem items_[kPending];
    size_t items_begin_ = 0, items_end_ = 0;

    void intern_oldest_item() {
        const PendingItem& p = items_[items_begin_ % kPending];
        const auto at = static_cast<size_t>(p.at);
        item_product[at] = products.intern(p.product, p.at);
        item_category[at] = categories.intern(p.category, p.at);
        item_brand[at] = brands.intern(p.brand, p.at);
        ++items_begin_;
    }

    void intern_oldest() {
        const Pending& p = pending_[pending_begin_ % kPending];
        user[static_cast<size_t>(p.slot)] = users.intern(p.id, p.slot);
        ++pending_begin_;
    }
};

inline bool opt_str(const Value& v) { return v.kind == ABSENT || v.kind == NUL || v.kind == STR; }
inline bool opt_id(const Value& v) { return v.kind == ABSENT || v.kind == NUL || Scanner::is_id(v); }
inline bool opt_amount(const Value& v) { return v.kind == ABSENT || v.kind == NUL || Scanner::is_amount(v); }
inline bool opt_list(const Value& v) { return v.kind == ABSENT || (v.kind == ARR && v.valid); }
inline bool single_product(const Value& v) { return v.kind == OBJ && v.valid; }

inline int event_type_of(std::string_view s) {
    // Candidates by length (the names are 10 to 25 bytes long).
    switch (s.size()) {
        case 10: return is(s, "app_opened") ? APP_OPENED : -1;
        case 11:
            switch (s[0]) {
                case 'p': return is(s, "page_viewed") ? PAGE_VIEWED : is(s, "push_opened") ? PUSH_OPENED : -1;
                case 'c': return is(s, "cart_viewed") ? CART_VIEWED : -1;
                case 's': return is(s, "sms_clicked") ? SMS_CLICKED : -1;
                default: return -1;
            }
        case 12: return is(s, "email_opened") ? EMAIL_OPENED : is(s, "unsubscribed") ? UNSUBSCRIBED : -1;
        case 13:
            switch (s[0]) {
                case 'p': return is(s, "product_added") ? PRODUCT_ADDED : -1;
                case 'e': return is(s, "email_clicked") ? EMAIL_CLICKED : -1;
                case 'a': return is(s, "app_installed") ? APP_INSTALLED : -1;
                default: return -1;
            }
        case 14:
            switch (s[0]) {
                case 'p': return is(s, "product_viewed") ? PRODUCT_VIEWED : -1;
                case 'c': return is(s, "coupon_applied") ? COUPON_APPLIED : -1;
                case 'o': return is(s, "order_refunded") ? ORDER_REFUNDED : -1;
                default: return -1;
            }
        case 15:
            switch (s[0]) {
                case 'p': return is(s, "product_removed") ? PRODUCT_REMOVED : -1;
                case 'o': return is(s, "order_completed") ? ORDER_COMPLETED : -1;
                case 'a': return is(s, "app_uninstalled") ? APP_UNINSTALLED : -1;
                case 'c': return is(s, "consent_changed") ? CONSENT_CHANGED : -1;
                default: return -1;
            }
        case 16: return is(s, "checkout_started") ? CHECKOUT_STARTED : -1;
        case 17: return is(s, "products_searched") ? PRODUCTS_SEARCHED : -1;
        case 19: return is(s, "product_list_viewed") ? PRODUCT_LIST_VIEWED : -1;
        case 25: return is(s, "product_added_to_wishlist") ? PRODUCT_ADDED_TO_WISHLIST : -1;
        default: return -1;
    }
}

inline int channel_of(std::string_view s) {
    switch (s.size()) {
        case 3: return is(s, "web") ? 0 : is(s, "app") ? 1 : is(s, "sms") ? 3 : -1;
        case 4: return is(s, "push") ? 4 : -1;
        case 5: return is(s, "email") ? 2 : is(s, "store") ? 5 : -1;
        case 8: return is(s, "whatsapp") ? 6 : -1;
        default: return -1;
    }
}

// Parse and validate the line that starts at `b` (not blank) and ends at the first '\n' or at `e`;
// commit it to `out` only when every check passes, and return its end (the '\n' or `e`). nullptr:
// not committed, the line's end not known (the parse stopped before it). The end is found by the
// parse itself (after the object only blanks may come), so the line is walked once.
// `limit` is the end of the buffer holding the line (see plain_run).
// `n_items` counts the item rows written so far (the item columns may be longer: spare room).
inline const char* read_line(const char* b, const char* e, int64_t slot, Columns& out,
                             std::vector<Product>& items, const char* limit, size_t& n_items) {
    items.clear();
    Scanner sc(b, e, &items, limit);
    Fields<N_FIELDS> f;
    LocalInterner::Key user{};
    sc.ws();
    if (sc.p >= sc.end || *sc.p != '{') return nullptr;
    ++sc.p;
    sc.ws();
    if (sc.p < sc.end && *sc.p == '}') return nullptr;
    while (true) {
        sc.ws();
        Str key;
        if (!sc.string(key)) return nullptr;
        sc.ws();
        if (sc.p >= sc.end || *sc.p != ':') return nullptr;
        ++sc.p;
        int idx = field_of(key.view());
        if (idx < 0) {
            if (!sc.skip(1)) return nullptr;
        } else {
            Value* v = f.claim(idx);
            if (!v) return nullptr;  // duplicate key: leave to msgspec
            if (!(idx == F_PRODUCT || idx == F_PRODUCTS ? sc.value(*v, true, 1) : sc.flat_value(*v, 1)))
                return nullptr;
            // the rest of the line is parsed while the user's interner slot comes into cache
            if (idx == F_USER_ID && v->kind == STR) {
                user = LocalInterner::key(v->s.view(), limit);
                out.users.prefetch(user);
            }
        }
        sc.ws();
        if (sc.p < sc.end && *sc.p == ',') { ++sc.p; continue; }
        if (sc.p < sc.end && *sc.p == '}') { ++sc.p; break; }
        return nullptr;
    }
    sc.ws();
    if (sc.p < sc.end && *sc.p != '\n') return nullptr;
    const char* const line_end = sc.p;

    if (f[F_TYPE].kind != STR) return nullptr;
    const int type = event_type_of(f[F_TYPE].s.view());
    if (type < 0) return nullptr;
    if (!Scanner::is_id(f[F_USER_ID]) || !opt_id(f[F_EVENT_ID]) || !opt_id(f[F_SESSION_ID])) return nullptr;
    int channel = -1;
    if (f[F_CHANNEL].kind == STR) {
        channel = channel_of(f[F_CHANNEL].s.view());
        if (channel < 0) return nullptr;
    } else if (f[F_CHANNEL].kind != ABSENT && f[F_CHANNEL].kind != NUL) {
        return nullptr;
    }
    int64_t ts;
    const Value& t = f[F_TIMESTAMP];
    if (t.kind == NUM && t.n.is_int) ts = t.n.i;
    else if (t.kind == STR) {
        if (!parse_rfc3339_ms(t.s.view(), ts, out.month)) return nullptr;
    } else return nullptr;
    if (ts < kMinTsMs || ts > kMaxTsMs) return nullptr;

    double revenue = NAN, discount = NAN;
    bool has_coupon = false, has_campaign = false;
    int8_t consent = -1;
    const Product* prods = nullptr;
    size_t n_prods = 0;
    auto list = [&](const Value& v) {
        if (v.kind == ARR) {
            prods = items.data() + v.first;
            n_prods = v.count;
        }
    };
    switch (type) {
        case PAGE_VIEWED:
            if (!opt_str(f[F_URL])) return nullptr;
            break;
        case PRODUCT_VIEWED:
        case PRODUCT_ADDED:
        case PRODUCT_REMOVED:
        case PRODUCT_ADDED_TO_WISHLIST: {
            if (!single_product(f[F_PRODUCT])) return nullptr;
            if (type == PRODUCT_ADDED || type == PRODUCT_REMOVED) {
                if (!opt_str(f[F_CART_ID])) return nullptr;
            } else if (type == PRODUCT_ADDED_TO_WISHLIST) {
                if (!opt_str(f[F_WISHLIST_ID])) return nullptr;
            }
            const Product& pr = items[f[F_PRODUCT].first];
            prods = &pr;
            n_prods = 1;
            revenue = pr.price * static_cast<double>(pr.quantity);
            discount = pr.discount;
            break;
        }
        case PRODUCT_LIST_VIEWED:
            if (!opt_str(f[F_LIST_ID]) || !opt_str(f[F_CATEGORY]) || !opt_list(f[F_PRODUCTS])) return nullptr;
            list(f[F_PRODUCTS]);
            break;
        case PRODUCTS_SEARCHED:
            if (!opt_str(f[F_QUERY])) return nullptr;
            break;
        case CART_VIEWED:
            if (!opt_str(f[F_CART_ID]) || !opt_list(f[F_PRODUCTS])) return nullptr;
            list(f[F_PRODUCTS]);
            break;
        case CHECKOUT_STARTED:
            if (!opt_str(f[F_ORDER_ID]) || !opt_list(f[F_PRODUCTS]) || !opt_amount(f[F_REVENUE])) return nullptr;
            list(f[F_PRODUCTS]);
            if (f[F_REVENUE].kind == NUM) revenue = f[F_REVENUE].n.d;
            break;
        case COUPON_APPLIED:
            if (!opt_str(f[F_COUPON]) || !opt_str(f[F_ORDER_ID]) || !opt_amount(f[F_DISCOUNT])) return nullptr;
            if (f[F_DISCOUNT].kind == NUM) discount = f[F_DISCOUNT].n.d;
            has_coupon = f[F_COUPON].kind == STR;
            break;
        case ORDER_COMPLETED: {
            const Value& cur = f[F_CURRENCY];
            if (!Scanner::is_id(f[F_ORDER_ID]) || f[F_PRODUCTS].kind != ARR || !f[F_PRODUCTS].valid ||
                !Scanner::is_amount(f[F_REVENUE]) || !opt_amount(f[F_DISCOUNT]) || !opt_str(f[F_COUPON]) ||
                !(cur.kind == ABSENT || cur.kind == NUL || (cur.kind == STR && cur.s.chars == 3)))
                return nullptr;
            list(f[F_PRODUCTS]);
            revenue = f[F_REVENUE].n.d;
            if (f[F_DISCOUNT].kind == NUM) discount = f[F_DISCOUNT].n.d;
            has_coupon = f[F_COUPON].kind == STR;
            break;
        }
        case ORDER_REFUNDED:
            if (!Scanner::is_id(f[F_ORDER_ID]) || !opt_amount(f[F_REVENUE]) || !opt_list(f[F_PRODUCTS]))
                return nullptr;
            list(f[F_PRODUCTS]);
            if (f[F_REVENUE].kind == NUM) revenue = f[F_REVENUE].n.d;
            break;
        case EMAIL_OPENED:
        case EMAIL_CLICKED:
        case SMS_CLICKED:
        case PUSH_OPENED:
        case UNSUBSCRIBED:
            // an unsubscribe from one medium is a consent decision (a per-medium code): msgspec's
            if (type == UNSUBSCRIBED && f[F_MEDIUM].kind != ABSENT) return nullptr;
            if (!opt_id(f[F_CAMPAIGN_ID])) return nullptr;
            has_campaign = f[F_CAMPAIGN_ID].kind == STR;
            break;
        case APP_INSTALLED:
        case APP_OPENED:
        case APP_UNINSTALLED:
            if (!opt_str(f[F_APP_VERSION])) return nullptr;
            break;
        case CONSENT_CHANGED:
            // a decision on one medium (channel consent, a code >= 2) is msgspec's, null medium too
            if (f[F_GRANTED].kind != BOOL || f[F_MEDIUM].kind != ABSENT) return nullptr;
            consent = f[F_GRANTED].b ? 1 : 0;
            break;
        default:
            return nullptr;
    }

    // Commit: everything below cannot fail.
    const auto at = static_cast<size_t>(slot);
    out.user[at] = -1;  // until the deferred intern
    out.defer_user(user, slot);
    out.status[at] = OK;
    out.event_type[at] = static_cast<uint8_t>(type);
    out.ts_ms[at] = ts;
    out.channel[at] = static_cast<uint8_t>(channel >= 0 ? channel : default_channel(type));
    out.revenue[at] = revenue;
    out.discount[at] = discount;
    out.has_coupon[at] = has_coupon;
    out.campaign[at] = has_campaign ? out.campaigns.intern(f[F_CAMPAIGN_ID].s.view(), slot, limit) : -1;
    out.event_id[at] = f[F_EVENT_ID].kind == STR ? fnv1a(f[F_EVENT_ID].s.view()) : 0;
    out.consent[at] = consent;
    if (n_items + n_prods > out.item_slot.size()) out.resize_items(2 * (n_items + n_prods));
    for (size_t k = 0; k < n_prods; ++k) {
        const Product& pr = prods[k];
        const size_t row = n_items + k;
        out.item_slot[row] = slot;
        out.defer_item(pr, static_cast<int64_t>(row), limit);
        out.item_price[row] = pr.price;
        out.item_discount[row] = pr.discount;
        out.item_quantity[row] = pr.quantity;
    }
    n_items += n_prods;
    return line_end;
}

// Read every non-blank line of data[from, to) into a slot; lines not committed keep status FLAGGED
// and placeholder values, for the caller to decode another way. `from` is a line start and `to` a
// line end (just past a '\n') or `size`; `begin` / `end` are offsets in `data`, lines and slots
// count from 0 at `from`, and the scanner may read (never parse) up to data + size. The row
// columns of `out` must be empty; its interners may hold names from earlier chunks (new names get
// the next codes). Returns the number of lines, blank ones included (the '\n's, plus one for a
// last line without).
inline int64_t read_ndjson_lines(const char* data, size_t from, size_t to, size_t size, Columns& out) {
    // The columns start at a guess of the line count, grow by doubling, and shrink to what was read.
    size_t rows = 0, n_items = 0;
    out.resize_rows((to - from) / 128 + 16);
    out.resize_items((to - from) / 128 + 16);
    std::vector<Product> items;
    const char* p = data + from;
    const char* const stop = data + to;
    const char* const end = data + size;
    int64_t line = 0;
    while (p < stop) {
        const char* q = p;
        while (q < stop && (*q == ' ' || *q == '\t' || *q == '\r')) ++q;
        const char* e = q;  // the line's end ('\n' or stop)
        if (q < stop && *q != '\n') {
            if (rows == out.line.size()) out.resize_rows(2 * rows);
            out.line[rows] = line;
            out.begin[rows] = q - data;
            e = read_line(q, stop, static_cast<int64_t>(rows), out, items, end, n_items);
            if (!e) {  // left to the caller: only now is its end looked for
                const void* nl = std::memchr(q, '\n', static_cast<size_t>(stop - q));
                e = nl ? static_cast<const char*>(nl) : stop;
                out.flag(rows);
            }
            out.end[rows] = e - data;
            ++rows;
        }
        ++line;
        p = e + 1;
    }
    out.flush_deferred();
    out.resize_rows(rows);
    out.resize_items(n_items);
    return line;
}

// read_ndjson_lines over the whole of `data`.
inline int64_t read_ndjson(const char* data, size_t size, Columns& out) {
    return read_ndjson_lines(data, 0, size, size, out);
}

// ---- Arrow columns -> first-seen local codes ----------------------------------------------------
// Rows are renumbered by first appearance: local code k is the k-th distinct value in row order,
// so interning the distinct values in code order interns them in order of first appearance.

inline bool arrow_valid(const uint8_t* bitmap, int64_t bit) {
    return !bitmap || ((bitmap[bit >> 3] >> (bit & 7)) & 1);
}

// Dictionary indices -> local codes (-1 where null); `order[k]` is the dictionary index and
// `first[k]` the first row of local code k. Returns the first row whose index is out of range, or -1.
template <class I>
int64_t dict_first_seen(const I* idx, int64_t n, const uint8_t* bitmap, int64_t bit_offset, int64_t dict_size,
                        int32_t* local, std::vector<int64_t>& order, std::vector<int64_t>& first) {
    std::vector<int32_t> seen(static_cast<size_t>(dict_size), -1);
    for (int64_t i = 0; i < n; ++i) {
        if (!arrow_valid(bitmap, bit_offset + i)) {
            local[i] = -1;
            continue;
        }
        const int64_t d = static_cast<int64_t>(idx[i]);
        if (d < 0 || d >= dict_size) return i;
        int32_t code = seen[static_cast<size_t>(d)];
        if (code < 0) {
            code = static_cast<int32_t>(order.size());
            seen[static_cast<size_t>(d)] = code;
            order.push_back(d);
            first.push_back(i);
        }
        local[i] = code;
    }
    return -1;
}

// Arrow (large_)string offsets + data -> local codes (-1 where null); `names` are views into
// `data` in first-seen order and `first[k]` the first row of local code k.
template <class O>
void strings_first_seen(const O* off, int64_t n, const char* data, const uint8_t* bitmap, int64_t bit_offset,
                        int32_t* local, LocalInterner& names) {
    for (int64_t i = 0; i < n; ++i) {
        if (!arrow_valid(bitmap, bit_offset + i)) {
            local[i] = -1;
            continue;
        }
        const std::string_view s(data + off[i], static_cast<size_t>(off[i + 1] - off[i]));
        local[i] = names.intern(s, i);
    }
}

// Number of code points of valid UTF-8 (bytes that are not continuation bytes).
inline int64_t utf8_chars(std::string_view s) {
    int64_t n = 0;
    for (unsigned char c : s) n += (c & 0xC0) != 0x80;
    return n;
}

}  // namespace ingest
}  // namespace affinity
