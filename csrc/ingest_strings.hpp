// The NDJSON reader's building blocks (ingest.hpp is the reader): the event and channel codes
// of affinity_sdk/events.py, the hashes of ids and event ids, and the string tables
// (LocalInterner) that turn ids into dense codes in first-seen order.
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

    // 4x while the table is small, so a table of 10^5+ names is rebuilt (and its fresh pages
    // zeroed by the kernel) half as often; 2x from kQuadrupleBelow slots (128 MiB) on.
    static constexpr size_t kQuadrupleBelow = size_t{1} << 22;
    void grow() {
        SlotArray<Slot> bigger(table_.size() * (table_.size() < kQuadrupleBelow ? 4 : 2));
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
}  // namespace ingest
}  // namespace affinity
