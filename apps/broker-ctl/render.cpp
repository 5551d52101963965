// broker-ctl output formatting.
#include "apps/broker-ctl/render.hpp"

#include <algorithm>

namespace tern::ctl {

std::string table(const std::vector<std::string>& header,
                  const std::vector<std::vector<std::string>>& rows) {
  std::vector<std::size_t> width(header.size(), 0);
  for (std::size_t i = 0; i < header.size(); ++i) {
    width[i] = header[i].size();
  }
  for (auto& r : rows) {
    for (std::size_t i = 0; i < r.size() && i < width.size(); ++i) {
      width[i] = std::max(width[i], r[i].size());
    }
  }
  auto line = [&](const std::vector<std::string>& cells) {
    std::string out;
    for (std::size_t i = 0; i < width.size(); ++i) {
      auto cell = i < cells.size() ? cells[i] : std::string();
      out += cell;
      if (i + 1 < width.size()) {
        out += std::string(width[i] - cell.size() + 2, ' ');
      }
    }
    while (!out.empty() && out.back() == ' ') {
      out.pop_back();
    }
    return out + "\n";
  };
  std::string out = line(header);
  std::vector<std::string> rule;
  for (auto w : width) {
    rule.emplace_back(w, '-');
  }
  out += line(rule);
  for (auto& r : rows) {
    out += line(r);
  }
  return out;
}

std::string key_values(const std::vector<std::pair<std::string, std::string>>& kv) {
  std::size_t w = 0;
  for (auto& [k, v] : kv) {
    w = std::max(w, k.size());
  }
  std::string out;
  for (auto& [k, v] : kv) {
    out += k + ":" + std::string(w - k.size() + 1, ' ') + v + "\n";
  }
  return out;
}

}  // namespace tern::ctl
