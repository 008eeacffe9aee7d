// The NDJSON reader (ingest.hpp) on several threads: a buffer is cut at line ends into parts, each
// part is read on its own thread into its own columns and interners, and the parts are merged in
// order. Names are interned into the output's interners part by part, each part's names in its own
// first-seen order, which is the order one thread reading the whole buffer meets them: the result
// (rows, codes, first-seen positions) is the single-threaded one, whatever the thread count.
// Costs against one thread: each part but the first interns into a table of its own before the
// merge, and its rows are copied once more, so a part pays off only with a core of its own.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <exception>
#include <memory>
#include <system_error>
#include <thread>
#include <vector>

#include "ingest.hpp"

namespace affinity {
namespace ingest {

// Offsets 0 = c[0] < c[1] < ... < c[n] = size cutting `data` into n <= parts ranges, each but the
// last ending just past a '\n': cuts aim at equal parts of at least `min_part` bytes (so small
// inputs stay on one thread), and a cut inside a line moves to that line's end (empty input: {0, 0}).
inline std::vector<size_t> line_cuts(const char* data, size_t size, int parts, size_t min_part) {
    std::vector<size_t> cuts{0};
    const size_t want = std::max<size_t>(1, std::min<size_t>(static_cast<size_t>(std::max(parts, 1)),
                                                             size / std::max<size_t>(min_part, 1)));
    for (size_t k = 1; k < want; ++k) {
        const size_t at = std::max(cuts.back(), size / want * k);
        if (at >= size) break;
        const void* nl = std::memchr(data + at, '\n', size - at);
        if (!nl) break;
        const size_t cut = static_cast<size_t>(static_cast<const char*>(nl) - data) + 1;
        if (cut >= size) break;
        if (cut > cuts.back()) cuts.push_back(cut);
    }
    cuts.push_back(size);
    return cuts;
}

// The code in `to` of each name of `from` (interned in `from`'s order, so new names take the next
// codes in first-seen order), first seen at from.first[i] + at0.
inline std::vector<int32_t> merge_names(const LocalInterner& from, LocalInterner& to, int64_t at0) {
    constexpr size_t kAhead = 8;  // `to` may be 10^5+ names: hide its slot's cache miss
    const size_t n = from.names.size();
    std::vector<int32_t> codes(n);
    LocalInterner::Key ahead[kAhead];  // the keys of names i .. i + kAhead - 1, each hashed once
    for (size_t i = 0; i < n && i < kAhead; ++i) to.prefetch(ahead[i] = LocalInterner::key(from.names[i]));
    for (size_t i = 0; i < n; ++i) {
        LocalInterner::Key& slot = ahead[i % kAhead];
        const LocalInterner::Key k = slot;
        if (i + kAhead < n) to.prefetch(slot = LocalInterner::key(from.names[i + kAhead]));
        codes[i] = to.intern(k, from.first[i] + at0);
    }
    return codes;
}

template <class V>
void append(V& out, const V& part) {
    out.insert(out.end(), part.begin(), part.end());
}

// Codes of `part` through `map`; -1 (none) stays -1.
template <class V>
void append_mapped(V& out, const V& part, const std::vector<int32_t>& map) {
    using T = typename V::value_type;
    const size_t at = out.size();
    out.resize(at + part.size());
    for (size_t i = 0; i < part.size(); ++i) out[at + i] = part[i] < 0 ? T(-1) : static_cast<T>(map[part[i]]);
}

template <class V>
void append_shifted(V& out, const V& part, typename V::value_type shift) {
    const size_t at = out.size();
    out.resize(at + part.size());
    for (size_t i = 0; i < part.size(); ++i) out[at + i] = part[i] + shift;
}

// Append the rows of `part` (read from line `line0` of the whole input, its first slot and item
// row landing at `slot0` and `item0`) to `out`, interning its names into `out`'s interners; all
// but the users, which merge_users appends (on another thread: they are most of the merge).
inline void append_part(const Columns& part, int64_t line0, int64_t slot0, int64_t item0, Columns& out) {
    const auto campaigns = merge_names(part.campaigns, out.campaigns, slot0);
    const auto products = merge_names(part.products, out.products, item0);
    const auto categories = merge_names(part.categories, out.categories, item0);
    const auto brands = merge_names(part.brands, out.brands, item0);
    append_shifted(out.line, part.line, line0);
    append(out.begin, part.begin);
    append(out.end, part.end);
    append(out.status, part.status);
    append(out.event_type, part.event_type);
    append(out.ts_ms, part.ts_ms);
    append(out.channel, part.channel);
    append(out.revenue, part.revenue);
    append(out.discount, part.discount);
    append(out.has_coupon, part.has_coupon);
    append_mapped(out.campaign, part.campaign, campaigns);
    append(out.event_id, part.event_id);
    append(out.consent, part.consent);
    append_shifted(out.item_slot, part.item_slot, slot0);
    append_mapped(out.item_product, part.item_product, products);
    append_mapped(out.item_category, part.item_category, categories);
    append_mapped(out.item_brand, part.item_brand, brands);
    append(out.item_price, part.item_price);
    append(out.item_discount, part.item_discount);
    append(out.item_quantity, part.item_quantity);
}

// The users of `part` (first slot at `slot0`) into out.users and out.user.
inline void merge_users(const Columns& part, int64_t slot0, Columns& out) {
    append_mapped(out.user, part.user, merge_names(part.users, out.users, slot0));
}

// Per-thread scratch columns, kept from call to call so their memory is reused.
class PartColumns {
public:
    Columns& get(size_t k) {
        while (parts_.size() <= k) parts_.push_back(std::make_unique<Columns>());
        Columns& c = *parts_[k];
        c.clear_rows();
        for (LocalInterner* in : {&c.users, &c.products, &c.categories, &c.brands, &c.campaigns}) in->clear();
        return c;
    }

private:
    std::vector<std::unique_ptr<Columns>> parts_;
};

// read_ndjson(data, size, out) on up to `threads` threads (the caller's among them), each part at
// least `min_part` bytes. Same contract (the row columns of `out` start empty) and the same result
// as read_ndjson.
inline int64_t read_ndjson_parallel(const char* data, size_t size, Columns& out, int threads, size_t min_part,
                                    PartColumns& scratch) {
    const std::vector<size_t> cuts = line_cuts(data, size, threads, min_part);
    const size_t n = cuts.size() - 1;
    if (n <= 1) return read_ndjson(data, size, out);
    // The first part is read straight into `out` (its codes are final as read); the others into
    // scratch columns, merged after it.
    std::vector<Columns*> parts(n);
    parts[0] = &out;
    out.reserve(size / 128 + 16);  // room for every part's rows (as read_ndjson guesses it)
    for (size_t k = 1; k < n; ++k) {
        parts[k] = &scratch.get(k);
        parts[k]->item_names = out.item_names;
    }
    std::vector<int64_t> lines(n, 0);
    std::vector<std::exception_ptr> failed(n);
    auto work = [&](size_t k) {
        try {
            lines[k] = read_ndjson_lines(data, cuts[k], cuts[k + 1], size, *parts[k]);
        } catch (...) {
            failed[k] = std::current_exception();
        }
    };
    std::vector<std::thread> pool;
    pool.reserve(n - 1);
    for (size_t k = 1; k < n; ++k) {
        try {
            pool.emplace_back(work, k);
        } catch (const std::system_error&) {  // no thread to be had: read the part here
            work(k);
        }
    }
    work(0);
    for (auto& t : pool) t.join();
    for (const auto& e : failed)
        if (e) std::rethrow_exception(e);
    // Where each part's lines, slots and item rows start in `out`.
    std::vector<int64_t> line0(n + 1, 0), slot0(n + 1, 0), item0(n + 1, 0);
    for (size_t k = 0; k < n; ++k) {
        line0[k + 1] = line0[k] + lines[k];
        slot0[k + 1] = slot0[k] + static_cast<int64_t>(parts[k]->line.size());
        item0[k + 1] = item0[k] + static_cast<int64_t>(parts[k]->item_slot.size());
    }
    out.reserve(static_cast<size_t>(std::max(slot0[n], item0[n])));
    // The two threads touch disjoint members of `out`.
    std::exception_ptr users_failed;
    auto all_users = [&] {
        try {
            for (size_t k = 1; k < n; ++k) merge_users(*parts[k], slot0[k], out);
        } catch (...) {
            users_failed = std::current_exception();
        }
    };
    std::thread users;
    try {
        users = std::thread(all_users);
    } catch (const std::system_error&) {
        all_users();
    }
    try {
        for (size_t k = 1; k < n; ++k) append_part(*parts[k], line0[k], slot0[k], item0[k], out);
    } catch (...) {
        if (users.joinable()) users.join();
        throw;
    }
    if (users.joinable()) users.join();
    if (users_failed) std::rethrow_exception(users_failed);
    return line0[n];
}

}  // namespace ingest
}  // namespace affinity
