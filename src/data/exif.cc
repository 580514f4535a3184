#include "data/exif.h"

#include <libexif/exif-data.h>

namespace dt {

int exif_orientation(const std::string& exif) {
  // libexif wants the APP1 form; PNG and WebP carry the TIFF part alone.
  const std::string block = exif.compare(0, 6, std::string("Exif\0\0", 6)) == 0 ? exif : std::string("Exif\0\0", 6) + exif;
  ExifData* data = exif_data_new_from_data(reinterpret_cast<const unsigned char*>(block.data()),
                                           static_cast<unsigned int>(block.size()));
  if (!data) return 1;
  int orientation = 1;
  ExifEntry* entry = exif_content_get_entry(data->ifd[EXIF_IFD_0], EXIF_TAG_ORIENTATION);
  if (entry && entry->format == EXIF_FORMAT_SHORT && entry->components >= 1 && entry->size >= 2) {
    const int value = exif_get_short(entry->data, exif_data_get_byte_order(data));
    if (value >= 1 && value <= 8) orientation = value;
  }
  exif_data_unref(data);
  return orientation;
}

}  // namespace dt
