// A publishing connection as seen by back-pressure (flow::backlog): pausing it stops reading
// its socket, waking it reads again. Created on a connection's first PUBLISH.
#pragma once

#include <chrono>
#include <memory>

#include "actors/connection/conn_io.hpp"
#include "actors/session/backlog.hpp"

namespace tern::actors::connection {

class read_gate final : public flow::gate {
 public:
  read_gate(std::weak_ptr<conn_io> io, std::chrono::milliseconds max_pause)
      : io_(std::move(io)), max_pause_(max_pause) {}

 protected:
  bool stop() override {
    auto io = io_.lock();
    return io && io->pause_reading(max_pause_);
  }
  void go() override {
    if (auto io = io_.lock()) {
      io->resume_reading();
    }
  }

 private:
  std::weak_ptr<conn_io> io_;
  std::chrono::milliseconds max_pause_;
};

}  // namespace tern::actors::connection
