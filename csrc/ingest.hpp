// NDJSON -> columnar events, without Python. The reader only commits lines it fully understands
// and validates exactly like the msgspec schema in affinity_sdk/events.py; every line it is unsure
// about (any schema failure, escapes, odd numbers or datetimes, duplicate keys, ...) is flagged, and
// Python decodes those with msgspec, so the two paths cannot disagree on semantics.
#pragma once

#include <cstdint>
#include <cstring>
#include <memory>
#include <string_view>
#include <vector>

#include "ingest_scan.hpp"

namespace affinity {
namespace ingest {

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
    // false: item rows keep their prices, discounts and quantities but not their product,
    // category and brand (codes -1, tables left empty), for a caller whose views read none.
    bool item_names = true;

    // `owns_names`: the interners copy their names (see LocalInterner), so this object can read
    // chunk after chunk, codes and first-seen order continuing across chunks.
    explicit Columns(bool owns_names = false)
        : users(owns_names), products(owns_names), categories(owns_names), brands(owns_names),
          campaigns(owns_names) {}

    // A slot's user is interned later, kBlock slots at a time, in slot order (so codes stay
    // first-seen): a lookup in a table of 10^5+ users misses the cache, and in a tight loop over a
    // block the misses overlap, where one lookup per line parsed (prefetched a few lines ahead)
    // held up the parse: 0.95 -> 0.65 s for 3M events of 300k users, the block passes included.
    // Called once per slot, in slot order: defer_user for a committed slot (`id` the key of its
    // user id), flag() for the others.
    void defer_user(const LocalInterner::Key& id) {
        user_keys_[users_n_] = id;
        if (++users_n_ == kBlock) intern_users();
    }

    // The same for a product line's product, category and brand, by item row (`at`, the next
    // one); the code columns get placeholders now.
    void defer_item(const Product& pr, int64_t at, const char* limit) {
        item_product[static_cast<size_t>(at)] = -1;
        item_category[static_cast<size_t>(at)] = -1;
        item_brand[static_cast<size_t>(at)] = -1;
        if (!item_names) return;
        LocalInterner::Key* keys = &item_keys_[3 * items_n_];
        keys[0] = LocalInterner::key(pr.product_id.view(), limit);
        keys[1] = LocalInterner::key(pr.category.view(), limit);
        keys[2] = LocalInterner::key(pr.brand.view(), limit);
        if (++items_n_ == kBlock) intern_items();
    }

    // Intern every deferred user and product line; call before the input buffer goes away. The
    // next slot is slot 0 again.
    void flush_deferred() {
        intern_users();
        intern_items();
        users_from_ = items_from_ = 0;
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
        users_from_ = users_n_ = items_from_ = items_n_ = 0;
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
        defer_user(LocalInterner::Key{});  // none: stays -1
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
    // The keys deferred since the last block: users by slot, items (product, category, brand) by
    // item row; the block's first slot / row, and how many so far.
    static constexpr size_t kBlock = 4096;
    std::unique_ptr<LocalInterner::Key[]> user_keys_{new LocalInterner::Key[kBlock]};
    std::unique_ptr<LocalInterner::Key[]> item_keys_{new LocalInterner::Key[3 * kBlock]};
    size_t users_from_ = 0, users_n_ = 0, items_from_ = 0, items_n_ = 0;

    void intern_users() {
        intern_run(users, user_keys_.get(), 1, users_n_, users_from_, user.data() + users_from_);
        users_from_ += users_n_;
        users_n_ = 0;
    }

    void intern_items() {
        const LocalInterner::Key* keys = item_keys_.get();
        const int64_t at = static_cast<int64_t>(items_from_);
        intern_run(products, keys, 3, items_n_, at, item_product.data() + items_from_);
        intern_run(categories, keys + 1, 3, items_n_, at, item_category.data() + items_from_);
        intern_run(brands, keys + 2, 3, items_n_, at, item_brand.data() + items_from_);
        items_from_ += items_n_;
        items_n_ = 0;
    }

    // codes[k] = table.intern(keys[k * stride], first + k) for k < n, in order, each slot
    // prefetched kAhead keys ahead; an empty key (no name) leaves codes[k] as it is.
    template <class T>
    static void intern_run(LocalInterner& table, const LocalInterner::Key* keys, size_t stride, size_t n,
                           int64_t first, T* codes) {
        constexpr size_t kAhead = 16;
        for (size_t k = 0; k < n && k < kAhead; ++k) table.prefetch(keys[k * stride]);
        for (size_t k = 0; k < n; ++k) {
            if (k + kAhead < n) table.prefetch(keys[(k + kAhead) * stride]);
            const LocalInterner::Key& key = keys[k * stride];
            if (!key.s.empty()) codes[k] = static_cast<T>(table.intern(key, first + static_cast<int64_t>(k)));
        }
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
            if (idx == F_USER_ID && v->kind == STR) user = LocalInterner::key(v->s.view(), limit);
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
    out.defer_user(user);
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
