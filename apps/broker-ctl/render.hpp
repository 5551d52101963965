// Human-readable output of broker-ctl: aligned text tables and key/value lists.
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace tern::ctl {

/// Columns padded to the widest cell; a header row and a rule line.
std::string table(const std::vector<std::string>& header,
                  const std::vector<std::vector<std::string>>& rows);

/// "key: value" lines with keys padded to the same width.
std::string key_values(const std::vector<std::pair<std::string, std::string>>& kv);

}  // namespace tern::ctl
