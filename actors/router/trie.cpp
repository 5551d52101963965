// Topic trie: one node per filter level, with '+' and '#' children kept apart from exact ones.
#include "actors/router/trie.hpp"

#include <array>
#include <cassert>
#include <cstdint>
#include <cstring>
#include <string>
#include <unordered_map>
#include <vector>

#include "proto/mqtt/topic.hpp"

namespace tern::actors::router {

// Every traversal below is iterative: filters may have tens of thousands of levels (a 65535
// byte "+/+/..."), which would overflow the stack of a recursive walk or destructor.

namespace {

using node = detail::trie_node;
using node_ptr = std::unique_ptr<node>;

// The exact-level children of a node. Most nodes have one or two, so they sit in a vector
// scanned linearly; past `max_small` they move to a hash map keyed by views of the children's
// own level strings (a child is heap-allocated and never moves, so the views stay valid, and
// lookups by a topic's string_view level need no std::string). Measured on 1M filters like
// "devices/{id}/cmd/+", this takes about 40% less memory than a map in every node.
class child_table {
 public:
  node* find(std::string_view level) const;
  /// Adds a child for `level`, which must not be present.
  node& add(std::string_view level);
  /// Removes (and destroys) `child`, which must be present.
  void remove(const node* child);
  bool empty() const { return small_.empty() && !big_; }
  /// Moves all children out, leaving the table empty.
  void take_all(std::vector<node_ptr>& out);
  template <class F>
  void for_each(F&& f) const;

 private:
  static constexpr std::size_t max_small = 8;
  using map = std::unordered_map<std::string_view, node_ptr>;

  std::vector<node_ptr> small_;  // used while big_ is null
  std::unique_ptr<map> big_;
};

}  // namespace

struct detail::trie_node {
  /// This node's level (empty for root, '+' and '#' nodes, which need no key).
  std::string level;
  /// The whole filter ending here while refs > 0, so match() can hand out views without
  /// allocating. Not NUL-terminated.
  std::unique_ptr<char[]> filter;
  std::uint32_t filter_size = 0;  // a valid filter has at most 65535 bytes
  std::uint32_t refs = 0;
  node_ptr plus;  // the '+' child
  node_ptr hash;  // the '#' child; always a leaf
  child_table children;

  std::string_view filter_view() const { return {filter.get(), filter_size}; }
  bool is_unused() const { return refs == 0 && !plus && !hash && children.empty(); }
};

namespace {

node* child_table::find(std::string_view level) const {
  if (big_) {
    const auto it = big_->find(level);
    return it == big_->end() ? nullptr : it->second.get();
  }
  for (const node_ptr& child : small_) {
    if (child->level == level) {
      return child.get();
    }
  }
  return nullptr;
}

node& child_table::add(std::string_view level) {
  auto child = std::make_unique<node>();
  child->level = std::string(level);
  node& ref = *child;
  if (!big_ && small_.size() < max_small) {
    small_.push_back(std::move(child));
    return ref;
  }
  if (!big_) {
    big_ = std::make_unique<map>();
    for (node_ptr& c : small_) {
      const std::string_view key = c->level;
      big_->emplace(key, std::move(c));
    }
    std::vector<node_ptr>().swap(small_);
  }
  const std::string_view key = ref.level;
  big_->emplace(key, std::move(child));
  return ref;
}

void child_table::remove(const node* child) {
  if (!big_) {
    for (node_ptr& c : small_) {
      if (c.get() == child) {
        c = std::move(small_.back());
        small_.pop_back();
        return;
      }
    }
    assert(false && "child_table::remove: not a child");
    return;
  }
  // Erase by iterator: the key views the child's own string, which the erase destroys.
  big_->erase(big_->find(child->level));
  // Shrink back, so a node that once had many children does not keep a large bucket array.
  if (big_->size() <= max_small / 2) {
    small_.reserve(big_->size());
    for (auto& [key, c] : *big_) {
      small_.push_back(std::move(c));
    }
    big_.reset();
  }
}

void child_table::take_all(std::vector<node_ptr>& out) {
  for (node_ptr& c : small_) {
    out.push_back(std::move(c));
  }
  small_.clear();
  if (big_) {
    for (auto& [key, c] : *big_) {
      out.push_back(std::move(c));
    }
    big_.reset();
  }
}

template <class F>
void child_table::for_each(F&& f) const {
  for (const node_ptr& c : small_) {
    f(*c);
  }
  if (big_) {
    for (const auto& [key, c] : *big_) {
      f(*c);
    }
  }
}

// Walks the '/'-separated levels of a filter or topic name without allocating.
class level_reader {
 public:
  explicit level_reader(std::string_view s) : s_(s) {}

  /// The next level; call only while !done().
  std::string_view next() {
    const std::size_t slash = s_.find('/', pos_);
    const std::string_view level = s_.substr(pos_, slash - pos_);
    is_done_ = slash == std::string_view::npos;
    pos_ = slash + 1;
    return level;
  }
  bool done() const { return is_done_; }

 private:
  std::string_view s_;
  std::size_t pos_ = 0;
  bool is_done_ = false;
};

// The child of `n` for one filter level, or null.
node* find_child(const node& n, std::string_view level) {
  if (level == "+") {
    return n.plus.get();
  }
  if (level == "#") {
    return n.hash.get();
  }
  return n.children.find(level);
}

// A list of node pointers that lives on the stack until it outgrows `inline_capacity`.
class node_list {
 public:
  static constexpr std::size_t inline_capacity = 32;

  void push(const node* n) {
    if (size_ < inline_capacity) {
      inline_[size_] = n;
    } else {
      overflow_.push_back(n);
    }
    ++size_;
  }
  const node& operator[](std::size_t i) const {
    return *(i < inline_capacity ? inline_[i] : overflow_[i - inline_capacity]);
  }
  std::size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  void clear() {
    size_ = 0;
    overflow_.clear();
  }

 private:
  std::array<const node*, inline_capacity> inline_{};
  std::vector<const node*> overflow_;
  std::size_t size_ = 0;
};

// Destroys a subtree without recursion: each node is emptied of children before it dies.
void destroy(node_ptr root) {
  std::vector<node_ptr> pending;
  pending.push_back(std::move(root));
  while (!pending.empty()) {
    node_ptr n = std::move(pending.back());
    pending.pop_back();
    if (n->plus) {
      pending.push_back(std::move(n->plus));
    }
    if (n->hash) {
      pending.push_back(std::move(n->hash));
    }
    n->children.take_all(pending);
  }
}

}  // namespace

trie::trie() noexcept = default;

trie::~trie() { clear(); }

trie::trie(trie&& other) noexcept
    : root_(std::move(other.root_)),
      size_(std::exchange(other.size_, 0)),
      node_count_(std::exchange(other.node_count_, 0)) {}

trie& trie::operator=(trie&& other) noexcept {
  if (this != &other) {
    clear();
    root_ = std::move(other.root_);
    size_ = std::exchange(other.size_, 0);
    node_count_ = std::exchange(other.node_count_, 0);
  }
  return *this;
}

bool trie::insert(std::string_view filter) {
  assert(proto::mqtt::is_valid_topic_filter(filter));
  if (!root_) {
    root_ = std::make_unique<node>();
  }
  node* n = root_.get();
  level_reader levels(filter);
  while (!levels.done()) {
    const std::string_view level = levels.next();
    node_ptr* wildcard = level == "+" ? &n->plus : level == "#" ? &n->hash : nullptr;
    if (wildcard != nullptr) {
      if (!*wildcard) {
        *wildcard = std::make_unique<node>();
        ++node_count_;
      }
      n = wildcard->get();
    } else if (node* child = n->children.find(level); child != nullptr) {
      n = child;
    } else {
      n = &n->children.add(level);
      ++node_count_;
    }
  }
  if (n->refs++ > 0) {
    return false;
  }
  n->filter = std::make_unique<char[]>(filter.size());
  std::memcpy(n->filter.get(), filter.data(), filter.size());
  n->filter_size = static_cast<std::uint32_t>(filter.size());
  ++size_;
  return true;
}

bool trie::erase(std::string_view filter) {
  if (!root_) {
    return false;
  }
  // The path from the root, to prune nodes bottom-up afterwards.
  std::vector<node*> path{root_.get()};
  level_reader levels(filter);
  while (!levels.done()) {
    node* child = find_child(*path.back(), levels.next());
    if (child == nullptr) {
      return false;
    }
    path.push_back(child);
  }
  node* target = path.back();
  if (target->refs == 0 || --target->refs > 0) {
    return false;
  }
  target->filter.reset();
  target->filter_size = 0;
  --size_;
  for (std::size_t i = path.size() - 1; i > 0 && path[i]->is_unused(); --i) {
    node* const parent = path[i - 1];
    node* const child = path[i];
    if (parent->plus.get() == child) {
      parent->plus.reset();
    } else if (parent->hash.get() == child) {
      parent->hash.reset();
    } else {
      parent->children.remove(child);
    }
    --node_count_;
  }
  if (size_ == 0) {
    clear();
  }
  return true;
}

bool trie::contains(std::string_view filter) const {
  const node* n = root_.get();
  level_reader levels(filter);
  while (n != nullptr && !levels.done()) {
    n = find_child(*n, levels.next());
  }
  return n != nullptr && n->refs > 0;
}

void trie::match_impl(std::string_view name, void* ctx, callback cb) const {
  if (!root_) {
    return;
  }
  // Breadth-first over the levels of `name`: the frontier holds the nodes whose filter prefix
  // matches the levels consumed so far. A node is reachable by one path only, so each filter
  // is reported once.
  std::array<node_list, 2> lists;
  std::size_t cur = 0;
  lists[cur].push(root_.get());
  // [MQTT-4.7.2-1] a filter starting with '+' or '#' does not match a topic starting with '$'.
  bool are_wildcards_allowed = name.empty() || name.front() != '$';
  level_reader levels(name);
  while (!levels.done()) {
    const std::string_view level = levels.next();
    const node_list& frontier = lists[cur];
    node_list& next = lists[cur ^ 1U];
    next.clear();
    for (std::size_t i = 0; i < frontier.size(); ++i) {
      const node& n = frontier[i];
      if (are_wildcards_allowed) {
        if (n.hash) {
          cb(ctx, n.hash->filter_view());  // '#' takes this level and all that follow
        }
        if (n.plus) {
          next.push(n.plus.get());
        }
      }
      if (const node* child = n.children.find(level); child != nullptr) {
        next.push(child);
      }
    }
    cur ^= 1U;
    are_wildcards_allowed = true;
    if (lists[cur].empty()) {
      return;
    }
  }
  // All levels consumed: filters ending here match, and so does "<prefix>/#" because '#'
  // also matches the parent level ("sport/#" matches "sport").
  const node_list& frontier = lists[cur];
  for (std::size_t i = 0; i < frontier.size(); ++i) {
    const node& n = frontier[i];
    if (n.refs > 0) {
      cb(ctx, n.filter_view());
    }
    if (n.hash) {
      cb(ctx, n.hash->filter_view());
    }
  }
}

void trie::for_each_impl(void* ctx, callback cb) const {
  if (!root_) {
    return;
  }
  std::vector<const node*> pending{root_.get()};
  while (!pending.empty()) {
    const node* n = pending.back();
    pending.pop_back();
    if (n->refs > 0) {
      cb(ctx, n->filter_view());
    }
    if (n->plus) {
      pending.push_back(n->plus.get());
    }
    if (n->hash) {
      pending.push_back(n->hash.get());
    }
    n->children.for_each([&](const node& child) { pending.push_back(&child); });
  }
}

void trie::clear() {
  if (root_) {
    destroy(std::move(root_));
  }
  size_ = 0;
  node_count_ = 0;
}

}  // namespace tern::actors::router
