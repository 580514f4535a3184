#include "train/tensorboard.h"

#include <gtest/gtest.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <unistd.h>

#include <nlohmann/json.hpp>

namespace dt {
namespace {
namespace fs = std::filesystem;

std::string run_command(const std::string& command, int& status) {
  std::string out;
  std::unique_ptr<FILE, int (*)(FILE*)> pipe(popen(command.c_str(), "r"), pclose);
  std::array<char, 4096> buffer;
  while (size_t n = fread(buffer.data(), 1, buffer.size(), pipe.get())) out.append(buffer.data(), n);
  status = pclose(pipe.release());
  return out;
}

// The file is read back by an independent reader: Python's protobuf with classes protoc generates
// from tests/tensorboard/event.proto, and its own CRC32C.
TEST(TensorBoard, EventFileReadsBackWithProtobuf) {
  const fs::path dir = fs::temp_directory_path() / ("dt_tb_" + std::to_string(getpid()));
  fs::remove_all(dir);
  std::string path;
  {
    TensorBoardWriter w(dir.string());
    w.scalars(1, {{"loss/step", 0.5}, {"lr", 1e-4}}, 1000.25);
    w.scalars(2, {{"loss/step", 0.25}, {"grad_norm", 3.0}}, 1001.5);
    w.scalars(300000000000, {{"loss/step", -2.0}}, 1002.0);
    path = w.path();
  }
  int status = 0;
  const std::string out = run_command("/usr/bin/python3 " DT_SOURCE_DIR "/tests/tensorboard/read_events.py " + path, status);
  ASSERT_EQ(status, 0) << out;
  std::vector<nlohmann::json> events;
  std::istringstream lines(out);
  for (std::string line; std::getline(lines, line);) events.push_back(nlohmann::json::parse(line));
  ASSERT_EQ(events.size(), 4u) << out;
  EXPECT_EQ(events[0]["file_version"], "brain.Event:2");
  EXPECT_EQ(events[1]["step"], 1);
  EXPECT_DOUBLE_EQ(events[1]["wall_time"].get<double>(), 1000.25);
  EXPECT_FLOAT_EQ(events[1]["values"]["loss/step"].get<float>(), 0.5f);
  EXPECT_FLOAT_EQ(events[1]["values"]["lr"].get<float>(), 1e-4f);
  EXPECT_FLOAT_EQ(events[2]["values"]["grad_norm"].get<float>(), 3.0f);
  EXPECT_EQ(events[3]["step"].get<int64_t>(), 300000000000);
  EXPECT_FLOAT_EQ(events[3]["values"]["loss/step"].get<float>(), -2.0f);

  // A flipped byte is caught by the reader's CRC check.
  {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(40);
    f.put('\x7f');
  }
  run_command("/usr/bin/python3 " DT_SOURCE_DIR "/tests/tensorboard/read_events.py " + path + " 2>&1", status);
  EXPECT_NE(status, 0);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace dt
