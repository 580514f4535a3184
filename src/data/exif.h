// The EXIF orientation tag, read with libexif.
#pragma once
#include <string>

namespace dt {

// Orientation (1..8) from an EXIF block: a JPEG APP1 payload ("Exif\0\0" + TIFF) or bare TIFF
// data (PNG eXIf, WebP EXIF). 1 (upright) when the tag is absent or the block unreadable.
int exif_orientation(const std::string& exif);

}  // namespace dt
