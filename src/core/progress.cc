#include "core/progress.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>

namespace dt {
namespace {

constexpr double kTerminalRedrawS = 0.1;  // at most 10 redraws per second
constexpr double kPlainLineS = 10.0;      // a log line every 10 s

double seconds_between(std::chrono::steady_clock::time_point a, std::chrono::steady_clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

}  // namespace

std::string format_duration(double seconds) {
  int64_t s = std::isfinite(seconds) && seconds > 0 ? int64_t(std::llround(seconds)) : 0;
  char buf[32];
  if (s >= 3600)
    std::snprintf(buf, sizeof buf, "%lld:%02lld:%02lld", (long long)(s / 3600), (long long)(s / 60 % 60),
                  (long long)(s % 60));
  else
    std::snprintf(buf, sizeof buf, "%lld:%02lld", (long long)(s / 60), (long long)(s % 60));
  return buf;
}

std::string progress_line(const std::string& label, int64_t done, int64_t total, double elapsed_s,
                          const std::string& note) {
  std::string line = label + "  " + std::to_string(done);
  if (total > 0) line += "/" + std::to_string(total);
  const double rate = elapsed_s > 0 ? double(done) / elapsed_s : 0.0;
  char buf[64];
  if (rate >= 1.0 || rate == 0.0)
    std::snprintf(buf, sizeof buf, "  %.2f it/s", rate);
  else
    std::snprintf(buf, sizeof buf, "  %.2f s/it", 1.0 / rate);
  line += buf;
  line += "  " + format_duration(elapsed_s);
  if (total > 0 && done < total && rate > 0) line += "  ETA " + format_duration(double(total - done) / rate);
  if (!note.empty()) line += "  " + note;
  return line;
}

std::string first_and_later(const std::vector<double>& item_seconds) {
  if (item_seconds.size() < 3) return "";
  std::vector<double> later(item_seconds.begin() + 1, item_seconds.end());
  std::nth_element(later.begin(), later.begin() + later.size() / 2, later.end());
  char buf[96];
  std::snprintf(buf, sizeof buf, "first %.3f s, later %.3f s", item_seconds.front(), later[later.size() / 2]);
  return buf;
}

Progress::Progress(std::string label, int64_t total, std::FILE* out)
    : label_(std::move(label)), total_(total), out_(out), terminal_(isatty(fileno(out)) != 0) {
  start_ = last_draw_ = last_advance_ = std::chrono::steady_clock::now();
  draw(false);
}

Progress::~Progress() { finish(); }

void Progress::skip(int64_t n) {
  done_ += n;
  last_advance_ = std::chrono::steady_clock::now();
}

void Progress::advance(int64_t n) {
  done_ += n;
  const auto now = std::chrono::steady_clock::now();
  if (n > 0) item_seconds_.push_back(seconds_between(last_advance_, now) / static_cast<double>(n));
  last_advance_ = now;
  if (seconds_between(last_draw_, now) >= (terminal_ ? kTerminalRedrawS : kPlainLineS)) draw(false);
}

void Progress::finish() {
  if (finished_) return;
  finished_ = true;
  draw(true);
}

void Progress::draw(bool final) {
  last_draw_ = std::chrono::steady_clock::now();
  std::string line = progress_line(label_, done_, total_, seconds_between(start_, last_draw_), note_);
  if (final)
    if (const std::string timing = first_and_later(item_seconds_); !timing.empty()) line += "  (" + timing + ")";
  if (terminal_) {
    if (total_ > 0) {  // a 20-cell bar in front of the numbers
      const int64_t cells = std::min<int64_t>(20, 20 * done_ / total_);
      line = "[" + std::string(size_t(cells), '#') + std::string(size_t(20 - cells), '.') + "] " + line;
    }
    std::fprintf(out_, "\r\033[K%s%s", line.c_str(), final ? "\n" : "");
  } else if (final || done_ > 0) {
    std::fprintf(out_, "%s\n", line.c_str());
  }
  std::fflush(out_);
}

}  // namespace dt
