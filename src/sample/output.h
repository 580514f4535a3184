// Sample images on disk: PNG files carrying their generation parameters, and grids.
// Two text chunks: "parameters" in the AUTOMATIC1111 layout that image viewers and web UIs show
// (prompt, "Negative prompt: …", "Steps: …, CFG scale: …, Seed: …, Size: …"), and "deltatrain",
// the same as JSON, for reading back exactly.
#pragma once
#include <string>
#include <utility>
#include <vector>

#include "data/image.h"
#include "sample/sample_config.h"

namespace dt {

struct LoraFile {
  std::string path;
  double strength = 1.0;
};

// "file.safetensors:0.8" → {file, 0.8}; a suffix that is not a number belongs to the path.
LoraFile parse_lora_file(const std::string& arg);

// Everything that made one image.
struct SampleInfo {
  SamplePrompt prompt;  // resolved: steps and cfg set
  std::string family;
  std::string model;    // the pipeline or transformer path (or a label such as "turbo + student LoRA")
  std::vector<LoraFile> loras;
  int64_t step = -1;    // the training step the sample was taken at; -1 outside training
};

std::string parameters_text(const SampleInfo& info);  // the A1111-style chunk
std::string parameters_json(const SampleInfo& info);  // the "deltatrain" chunk
// Reads the "deltatrain" chunk of a sample PNG back; dt::Error naming `name` when absent or bad.
SampleInfo read_parameters(const std::string& png_bytes, const std::string& name);

// Writes `image` as a PNG with both chunks (atomically).
void write_sample_png(const std::string& path, const Image& image, const SampleInfo& info);

// A table of tiles of equal size, each magnified `scale` times: `column_labels` above the columns,
// each row's label on a line above it (text set in DejaVu Sans by FreeType, from Debian's
// fonts-dejavu-core; dt::Error when the font is missing). Used for comparison grids (world efficacy).
Image labelled_grid(const std::vector<std::vector<Image>>& rows, const std::vector<std::string>& column_labels,
                    const std::vector<std::string>& row_labels, int scale = 1);

// Tiles of equal size in rows of `columns`, separated by `gap` pixels of `background`.
Image make_grid(const std::vector<Image>& tiles, int columns, int gap = 4, Rgb background = {255, 255, 255});

}  // namespace dt
