#pragma once
// Bundle verification (`zaya verify`): the checks the seed bundle cards describe — headers, coverage of the
// architecture's tensors with the right shape/dtype for their storage format, no leftover local_experts, experts
// pre-stacked as switch_mlp, the passthrough floor, the JANGTQ sidecar, VL tensors, key count and total size.
// Never throws on a broken bundle: every problem becomes a named entry in the report.
#include <cstdint>
#include <string>
#include <vector>

namespace zaya {

struct VerifyCheck {
  enum Status { Pass, Fail, Skip };
  std::string name;
  Status status = Pass;
  std::string detail;                 // one-line summary
  std::vector<std::string> problems;  // every problem found (empty when passing)
};

struct VerifyReport {
  std::string dir;
  std::string kind;  // e.g. "quantized bundle (affine 4-bit g32 …)", "float checkpoint"
  std::vector<VerifyCheck> checks;
  size_t keys = 0;            // tensors across the shards
  uint64_t tensor_bytes = 0;  // sum of tensor bytes
  uint64_t file_bytes = 0;    // sum of shard file sizes
  bool ok() const;
};

VerifyReport verify_bundle(const std::string& dir);
std::string verify_report_table(const VerifyReport& r);
std::string verify_report_json(const VerifyReport& r);

}  // namespace zaya
