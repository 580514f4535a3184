// A progress display for long loops (caching, training): count, rate and ETA. On a terminal it
// redraws one line in place; otherwise (logs, pipes) it prints a plain line now and then.
#pragma once
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace dt {

class Progress {
 public:
  // `total` may be 0 when unknown (no ETA then). Writes to `out` (stdout by default).
  Progress(std::string label, int64_t total, std::FILE* out = stdout);
  ~Progress();  // finishes the line if finish() was not called
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  void advance(int64_t n = 1);
  void skip(int64_t n);  // items done before this run (a resumed one): counted, not timed
  void set_note(std::string note) { note_ = std::move(note); }  // shown after the numbers (e.g. loss)
  void finish();
  int64_t done() const { return done_; }

 private:
  void draw(bool final);
  std::string label_, note_;
  int64_t total_, done_ = 0;
  std::FILE* out_;
  bool terminal_, finished_ = false;
  std::chrono::steady_clock::time_point start_, last_draw_, last_advance_;
  std::vector<double> item_seconds_;  // per advance: the time since the previous one, per item
};

// "label  12/100  3.4 it/s  ETA 0:26  note" — what Progress prints, as a pure function.
std::string progress_line(const std::string& label, int64_t done, int64_t total, double elapsed_s,
                          const std::string& note = "");
// "first 0.612 s, later 0.452 s": the first timed item against the median of the others, which
// the final line ends with (slow first steps show there); empty below three timed items.
std::string first_and_later(const std::vector<double>& item_seconds);
// 0:05, 12:34, 1:02:03
std::string format_duration(double seconds);

}  // namespace dt
