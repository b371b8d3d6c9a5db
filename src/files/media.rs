//! What is done to an upload, already whole in a temporary file, before it is
//! kept: its type is read from its bytes ([`sniff`]); an image that browsers
//! show inline loses its metadata ([`strip_metadata`]: where and when a photo
//! was taken, the camera's serial number, an editor's history — the things a
//! sender rarely means to share); and its displayed size and a thumbnail are
//! worked out ([`process_image`]), refusing decompression bombs before a
//! single pixel is decoded.
//!
//! Everything here is synchronous and may take a while on a large image: the
//! caller runs it in `spawn_blocking`, behind a semaphore that bounds how
//! many run at once (each may hold a decoded image: see [`ImageLimits`]).
//!
//! Nothing from the file is trusted. Lengths read from it never size an
//! allocation beyond a fixed cap (the walks below stream, or read at most
//! [`METADATA_CAP`] bytes of a block); a malformed file is
//! [`MediaError::Undecodable`], never a panic.

use std::fmt;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;

use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::PngEncoder;
use image::metadata::Orientation;
use image::{
    ColorType, DynamicImage, ExtendedColorType, GenericImageView, ImageDecoder, ImageEncoder,
    ImageError, ImageFormat, ImageReader,
};

/// How much of a file [`sniff`] needs: every signature it knows, `infer`'s
/// included, is within the first 8 KiB.
pub const SNIFF_BYTES: usize = 8192;

/// The types served inline, as images, and the only ones [`strip_metadata`]
/// and [`process_image`] take. Everything else is served as a download: a
/// browser shown an uploaded HTML or SVG file inline would run its scripts
/// with the server's origin.
pub const INLINE_IMAGES: [&str; 4] = ["image/png", "image/jpeg", "image/gif", "image/webp"];

/// The longer side of a thumbnail, in pixels; smaller images are not
/// enlarged.
pub const THUMBNAIL_SIZE: u32 = 400;

/// JPEG quality of an opaque thumbnail: no visible loss at that size, for a
/// file of some 20–40 KB.
const THUMBNAIL_QUALITY: u8 = 80;

const OCTET_STREAM: &str = "application/octet-stream";

/// The most of a metadata block (an Exif chunk) read to find the orientation
/// in: the orientation is in the first directory, near the start. A JPEG
/// segment is at most 64 KiB by its 16-bit length anyway.
pub const METADATA_CAP: usize = 64 * 1024;

/// The type of a file, from its first bytes (never the client's word or the
/// name): the client may lie, and a browser believes the `Content-Type` it
/// is served.
///
/// `head` is the start of the file, [`SNIFF_BYTES`] of it (or all of a
/// shorter file). The four [`INLINE_IMAGES`] are recognised by their
/// signatures; other recognisable binary formats (PDF, ZIP, MP4, WebM, MP3,
/// Ogg, …) get the `infer` crate's MIME type; everything else is
/// `application/octet-stream` — text of every kind included, HTML, SVG, XML
/// and scripts deliberately: such an upload is never labelled as what it is,
/// so no browser renders it.
pub fn sniff(head: &[u8]) -> &'static str {
    if head.starts_with(PNG_SIGNATURE) {
        return "image/png";
    }
    if head.starts_with(&[0xFF, 0xD8, 0xFF]) {
        return "image/jpeg";
    }
    if head.starts_with(b"GIF87a") || head.starts_with(b"GIF89a") {
        return "image/gif";
    }
    if head.len() >= 12 && head.starts_with(b"RIFF") && &head[8..12] == b"WEBP" {
        return "image/webp";
    }
    match infer::get(head) {
        Some(kind)
            if kind.matcher_type() != infer::MatcherType::Text && !is_markup(kind.mime_type()) =>
        {
            kind.mime_type()
        }
        _ => OCTET_STREAM,
    }
}

/// Types a browser may render as a document (a second guard behind
/// `infer`'s text matchers, should a later `infer` add such a type elsewhere).
fn is_markup(mime: &str) -> bool {
    mime.starts_with("text/")
        || ["html", "xml", "svg", "script"]
            .iter()
            .any(|word| mime.contains(word))
}

/// How large an image [`process_image`] decodes. A decoded image takes
/// 3–8 bytes a pixel, whatever the size of its file: a few KB of PNG can
/// claim 100000×100000 pixels (a decompression bomb).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageLimits {
    /// Width × height above which an image is refused, from its header,
    /// before anything is decoded. 40 megapixels by default: more than any
    /// phone camera (about 120 MB decoded as RGB).
    pub max_pixels: u64,
    /// The most a decoder may allocate, the decoded image included
    /// (`image::Limits::max_alloc`). 512 MiB by default.
    pub max_alloc: u64,
}

impl Default for ImageLimits {
    fn default() -> Self {
        ImageLimits {
            max_pixels: 40_000_000,
            max_alloc: 512 * 1024 * 1024,
        }
    }
}

/// What [`process_image`] learnt of an image.
#[derive(Clone, PartialEq, Eq)]
pub struct Processed {
    /// Displayed size, after EXIF orientation (a portrait photo stored
    /// sideways with orientation 6 is reported as portrait).
    pub width: u32,
    pub height: u32,
    /// The thumbnail: at most [`THUMBNAIL_SIZE`] px on its longer side (not
    /// upscaled), upright, JPEG (quality 80) when opaque, PNG when some of
    /// it is transparent.
    pub thumbnail: Vec<u8>,
    /// `image/jpeg` or `image/png`.
    pub thumbnail_type: &'static str,
}

impl fmt::Debug for Processed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Processed")
            .field("width", &self.width)
            .field("height", &self.height)
            .field("thumbnail", &format_args!("{} bytes", self.thumbnail.len()))
            .field("thumbnail_type", &self.thumbnail_type)
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// The image's header claims more pixels than [`ImageLimits::max_pixels`]:
    /// refused before decoding.
    #[error("the image is {width}×{height} pixels, more than the {max} allowed")]
    TooManyPixels { width: u32, height: u32, max: u64 },
    /// Not an image of the type given, or a malformed one (truncated, a
    /// length pointing past the end, a corrupt body), or one whose decoding
    /// would need more memory than [`ImageLimits::max_alloc`].
    #[error("not a decodable image: {0}")]
    Undecodable(String),
    /// Reading or writing the files failed.
    #[error(transparent)]
    Io(#[from] io::Error),
}

fn bad(why: impl Into<String>) -> MediaError {
    MediaError::Undecodable(why.into())
}

/// The decoder for one of [`INLINE_IMAGES`].
fn inline_format(content_type: &str) -> Result<ImageFormat, MediaError> {
    match content_type {
        "image/png" => Ok(ImageFormat::Png),
        "image/jpeg" => Ok(ImageFormat::Jpeg),
        "image/gif" => Ok(ImageFormat::Gif),
        "image/webp" => Ok(ImageFormat::WebP),
        other => Err(bad(format!("{other:?} is not an inline image type"))),
    }
}

/// Copies the image at `src` to `dst` without its metadata, streaming (never
/// the whole file in memory). `content_type` is one of [`INLINE_IMAGES`],
/// as [`sniff`] found it; anything else is [`MediaError::Undecodable`].
///
/// What goes, by format (what stays is what the pixels need to look right):
/// - JPEG: every APPn segment but JFIF (APP0, without its thumbnail), an ICC
///   profile (APP2 `ICC_PROFILE`) and Adobe's colour transform (APP14) —
///   so Exif, XMP, IPTC/Photoshop, MPF and the like go — and comments.
///   An Exif orientation other than 1 is kept, alone, in a minimal Exif
///   segment written where the Exif was, so that photos still show upright.
/// - PNG: every ancillary chunk but those about colour, transparency,
///   physical size and APNG animation (text, `tIME`, `eXIf` and private
///   chunks such as C2PA's go); the CRCs of kept chunks are copied as they
///   are. An orientation is kept as for JPEG, in a minimal `eXIf`.
/// - WebP: `EXIF`, `XMP ` and unknown chunks (an orientation is kept as for
///   JPEG); the VP8X flags and the RIFF size follow.
/// - GIF: comments and application extensions other than looping
///   (`NETSCAPE2.0`, `ANIMEXTS1.0`) and ICC (`ICCRGBG1012`) — XMP lives in
///   one.
///
/// In every format anything after the image's end (JPEG EOI, PNG IEND, the
/// RIFF size, the GIF trailer) is dropped: phones append videos and second
/// pictures there, and an editor that saved a crop over a longer file left
/// the uncropped rest of it there ("aCropalypse").
///
/// On error `dst` is removed.
pub fn strip_metadata(content_type: &str, src: &Path, dst: &Path) -> Result<(), MediaError> {
    let format = inline_format(content_type)?;
    let mut reader = BufReader::new(File::open(src)?);
    let written = File::create(dst)
        .map_err(MediaError::from)
        .and_then(|file| {
            let mut writer = BufWriter::new(file);
            strip(format, &mut reader, &mut writer)?;
            writer.flush()?;
            Ok(())
        });
    if written.is_err() {
        let _ = fs::remove_file(dst);
    }
    written
}

/// Writes what [`strip_metadata`] keeps of `r` to `w`; returns the Exif
/// orientation found (1–8), if any.
fn strip<R: BufRead + Seek, W: Write>(
    format: ImageFormat,
    r: &mut R,
    w: &mut W,
) -> Result<Option<u8>, MediaError> {
    match format {
        ImageFormat::Jpeg => strip_jpeg(r, w),
        ImageFormat::Png => strip_png(r, w),
        ImageFormat::WebP => strip_webp(r, w),
        ImageFormat::Gif => strip_gif(r, w).map(|()| None),
        other => Err(bad(format!("no metadata stripping for {other:?}"))),
    }
}

/// Reads the image's dimensions from its header, refuses more than
/// `max_pixels` BEFORE decoding (the decompression-bomb guard), decodes
/// (with `image::Limits`: the width and height just read, so that no later
/// header can claim more, and `max_alloc`), applies the EXIF orientation,
/// and makes the thumbnail (see [`Processed`]).
///
/// `content_type` is one of [`INLINE_IMAGES`], as [`sniff`] found it. The
/// orientation is read by the same walk of the file as [`strip_metadata`]'s
/// (so a file `strip_metadata` refuses is refused here too, and the
/// orientation is the one the stripped file keeps): `path` may be the
/// upload or its stripped copy alike. Of an animation, the first frame is
/// taken.
///
/// The JPEG decoder reads the whole file into memory before its header
/// (the upload size limit bounds that); the other decoders read the header
/// alone.
pub fn process_image(
    path: &Path,
    content_type: &str,
    limits: &ImageLimits,
) -> Result<Processed, MediaError> {
    let format = inline_format(content_type)?;

    let mut reader = ImageReader::with_format(BufReader::new(File::open(path)?), format);
    let mut header_limits = image::Limits::default();
    header_limits.max_alloc = Some(limits.max_alloc);
    reader.limits(header_limits);
    let mut decoder = reader.into_decoder().map_err(image_error)?;
    let (width, height) = decoder.dimensions();
    if u64::from(width) * u64::from(height) > limits.max_pixels {
        return Err(MediaError::TooManyPixels {
            width,
            height,
            max: limits.max_pixels,
        });
    }
    if width == 0 || height == 0 {
        return Err(bad("the image has no pixels"));
    }

    let orientation = strip(
        format,
        &mut BufReader::new(File::open(path)?),
        &mut io::sink(),
    )?
    .and_then(Orientation::from_exif)
    .unwrap_or(Orientation::NoTransforms);

    let mut decode_limits = image::Limits::default();
    decode_limits.max_image_width = Some(width);
    decode_limits.max_image_height = Some(height);
    decode_limits.max_alloc = Some(limits.max_alloc);
    // The decoded image counts against max_alloc, as in `ImageReader::decode`.
    decode_limits
        .reserve(decoder.total_bytes())
        .map_err(image_error)?;
    decoder.set_limits(decode_limits).map_err(image_error)?;
    let image = DynamicImage::from_decoder(decoder).map_err(image_error)?;

    // Scaled first, turned after: turning the thumbnail costs nothing,
    // turning the whole image would copy it.
    let (thumb_width, thumb_height) = thumbnail_size(width, height);
    let mut thumb = if (thumb_width, thumb_height) == (width, height) {
        image
    } else {
        image.thumbnail_exact(thumb_width, thumb_height)
    };
    thumb.apply_orientation(orientation);
    let (thumbnail, thumbnail_type) = encode_thumbnail(&thumb)?;

    let quarter_turn = matches!(
        orientation,
        Orientation::Rotate90
            | Orientation::Rotate270
            | Orientation::Rotate90FlipH
            | Orientation::Rotate270FlipH
    );
    let (width, height) = if quarter_turn {
        (height, width)
    } else {
        (width, height)
    };
    Ok(Processed {
        width,
        height,
        thumbnail,
        thumbnail_type,
    })
}

fn image_error(e: ImageError) -> MediaError {
    match e {
        ImageError::IoError(e) if e.kind() != io::ErrorKind::UnexpectedEof => MediaError::Io(e),
        ImageError::Limits(e) => bad(format!("decoding it would exceed a limit: {e}")),
        e => bad(e.to_string()),
    }
}

/// The size of the thumbnail of a `width`×`height` image: the longer side
/// [`THUMBNAIL_SIZE`], the other in proportion (at least 1), or the image's
/// own size when it is no larger.
fn thumbnail_size(width: u32, height: u32) -> (u32, u32) {
    let longer = width.max(height);
    if longer <= THUMBNAIL_SIZE {
        return (width, height);
    }
    let scale = |side: u32| {
        let scaled = (u64::from(side) * u64::from(THUMBNAIL_SIZE) + u64::from(longer) / 2)
            / u64::from(longer);
        // At most THUMBNAIL_SIZE, as side <= longer.
        u32::try_from(scaled).unwrap_or(THUMBNAIL_SIZE).max(1)
    };
    (scale(width), scale(height))
}

/// JPEG when every pixel is opaque (an RGBA screenshot included: a JPEG is
/// a fraction of the size), PNG when some are not (JPEG has no alpha).
fn encode_thumbnail(thumb: &DynamicImage) -> Result<(Vec<u8>, &'static str), MediaError> {
    let failed = |e: ImageError| bad(format!("could not encode the thumbnail: {e}"));
    let mut out = Vec::new();
    let opaque = !thumb.has_alpha() || thumb.pixels().all(|(_, _, pixel)| pixel[3] == u8::MAX);
    if !opaque {
        let rgba = thumb.to_rgba8();
        PngEncoder::new(&mut out)
            .write_image(
                rgba.as_raw(),
                rgba.width(),
                rgba.height(),
                ExtendedColorType::Rgba8,
            )
            .map_err(failed)?;
        return Ok((out, "image/png"));
    }
    let mut encoder = JpegEncoder::new_with_quality(&mut out, THUMBNAIL_QUALITY);
    let grey = matches!(
        thumb.color(),
        ColorType::L8 | ColorType::La8 | ColorType::L16 | ColorType::La16
    );
    if grey {
        encoder.encode_image(&thumb.to_luma8())
    } else {
        encoder.encode_image(&thumb.to_rgb8())
    }
    .map_err(failed)?;
    Ok((out, "image/jpeg"))
}

// ---------------------------------------------------------------------------
// Reading helpers: an end of file where more was announced is a malformed
// file (Undecodable), not an I/O failure.

fn read_exact<R: Read + ?Sized>(r: &mut R, buf: &mut [u8]) -> Result<(), MediaError> {
    r.read_exact(buf).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            bad("the file ends in the middle of a block")
        } else {
            MediaError::Io(e)
        }
    })
}

fn read_u8<R: Read + ?Sized>(r: &mut R) -> Result<u8, MediaError> {
    let mut byte = [0];
    read_exact(r, &mut byte)?;
    Ok(byte[0])
}

/// The next byte, or `None` at the end of the file.
fn next_byte<R: BufRead + ?Sized>(r: &mut R) -> Result<Option<u8>, MediaError> {
    let byte = r.fill_buf()?.first().copied();
    if byte.is_some() {
        r.consume(1);
    }
    Ok(byte)
}

/// Copies exactly `n` bytes, streaming.
fn copy_exact<R: Read, W: Write + ?Sized>(r: &mut R, w: &mut W, n: u64) -> Result<(), MediaError> {
    let copied = io::copy(&mut r.by_ref().take(n), w)?;
    if copied < n {
        return Err(bad("the file ends in the middle of a block"));
    }
    Ok(())
}

fn skip_exact<R: Read>(r: &mut R, n: u64) -> Result<(), MediaError> {
    copy_exact(r, &mut io::sink(), n)
}

/// The first [`METADATA_CAP`] bytes of an `n`-byte block, the rest skipped.
fn read_prefix<R: Read>(r: &mut R, n: u64) -> Result<Vec<u8>, MediaError> {
    let kept = usize::try_from(n).map_or(METADATA_CAP, |n| n.min(METADATA_CAP));
    let mut prefix = vec![0; kept];
    read_exact(r, &mut prefix)?;
    skip_exact(r, n - kept as u64)?;
    Ok(prefix)
}

// ---------------------------------------------------------------------------
// Exif orientation: tag 0x0112 in the first directory (IFD0) of the TIFF
// structure an Exif block is.

const EXIF_HEADER: &[u8] = b"Exif\0\0";
const ORIENTATION_TAG: u16 = 0x0112;

/// The orientation (1–8) in a TIFF structure, either byte order; `None`
/// when there is none or the structure is malformed.
fn tiff_orientation(tiff: &[u8]) -> Option<u8> {
    let big_endian = match tiff.get(..4)? {
        b"II*\0" => false,
        b"MM\0*" => true,
        _ => return None,
    };
    let u16_at = |at: usize| -> Option<u16> {
        let bytes = [*tiff.get(at)?, *tiff.get(at.checked_add(1)?)?];
        Some(if big_endian {
            u16::from_be_bytes(bytes)
        } else {
            u16::from_le_bytes(bytes)
        })
    };
    let u32_at = |at: usize| -> Option<u32> {
        let bytes: [u8; 4] = tiff.get(at..at.checked_add(4)?)?.try_into().ok()?;
        Some(if big_endian {
            u32::from_be_bytes(bytes)
        } else {
            u32::from_le_bytes(bytes)
        })
    };
    let ifd = usize::try_from(u32_at(4)?).ok()?;
    let entries = u16_at(ifd)?;
    for i in 0..usize::from(entries) {
        let entry = ifd.checked_add(2 + 12 * i)?;
        if u16_at(entry)? != ORIENTATION_TAG {
            continue;
        }
        let value = match u16_at(entry + 2)? {
            3 => u32::from(u16_at(entry + 8)?), // SHORT, as the standard says
            4 => u32_at(entry + 8)?,            // LONG, as a few writers do
            _ => return None,
        };
        return u8::try_from(value).ok().filter(|v| (1..=8).contains(v));
    }
    None
}

/// A TIFF structure holding the orientation alone: header (big-endian),
/// one directory of one entry, no next directory.
fn orientation_tiff(orientation: u8) -> [u8; 26] {
    let mut tiff = [0; 26];
    tiff[..8].copy_from_slice(b"MM\0*\0\0\0\x08");
    tiff[8..10].copy_from_slice(&1u16.to_be_bytes());
    tiff[10..12].copy_from_slice(&ORIENTATION_TAG.to_be_bytes());
    tiff[12..14].copy_from_slice(&3u16.to_be_bytes()); // SHORT
    tiff[14..18].copy_from_slice(&1u32.to_be_bytes()); // one value
    tiff[18..20].copy_from_slice(&u16::from(orientation).to_be_bytes());
    // tiff[20..22]: padding of the value; tiff[22..26]: no next directory.
    tiff
}

/// The orientation to keep: one that changes something.
fn kept_orientation(orientation: Option<u8>) -> Option<u8> {
    orientation.filter(|&o| o != 1)
}

// ---------------------------------------------------------------------------
// JPEG: marker segments (FF xx, a 16-bit length counting itself, the
// payload) up to each scan (SOS), whose entropy-coded data runs to the next
// marker that is neither a stuffed FF 00 nor a restart marker.

const SOI: u8 = 0xD8;
const EOI: u8 = 0xD9;
const SOS: u8 = 0xDA;
const TEM: u8 = 0x01;
const APP0: u8 = 0xE0;
const APP1: u8 = 0xE1;
const APP2: u8 = 0xE2;
const APP14: u8 = 0xEE;
const APP15: u8 = 0xEF;
const COM: u8 = 0xFE;

fn strip_jpeg<R: BufRead, W: Write>(r: &mut R, w: &mut W) -> Result<Option<u8>, MediaError> {
    let mut soi = [0; 2];
    read_exact(r, &mut soi)?;
    if soi != [0xFF, SOI] {
        return Err(bad("not a JPEG: no start-of-image marker"));
    }
    w.write_all(&soi)?;
    // A segment's length is 16 bits: this holds any, and is all that is
    // ever allocated here.
    let mut segment = vec![0; usize::from(u16::MAX)];
    let mut orientation = None;
    let mut seen_exif = false;
    let mut scanned = false;
    let mut marker = next_marker(r)?;
    loop {
        match marker {
            EOI if scanned => {
                // Whatever follows (a phone's video, a second picture) goes.
                w.write_all(&[0xFF, EOI])?;
                return Ok(orientation);
            }
            EOI => return Err(bad("the JPEG ends before its image data")),
            0x00 | TEM | SOI | 0xD0..=0xD7 => {
                return Err(bad(format!("JPEG marker {marker:#04X} out of place")));
            }
            _ => {}
        }
        let mut length = [0; 2];
        read_exact(r, &mut length)?;
        let length = usize::from(u16::from_be_bytes(length));
        let Some(payload_length) = length.checked_sub(2) else {
            return Err(bad("a JPEG segment shorter than its length field"));
        };
        let payload = &mut segment[..payload_length];
        read_exact(r, payload)?;
        let payload = &*payload;
        match marker {
            APP0 => {
                if payload.len() >= 14 && payload.starts_with(b"JFIF\0") {
                    // Version, units and density; no thumbnail (0×0).
                    let mut jfif = [0; 14];
                    jfif[..12].copy_from_slice(&payload[..12]);
                    write_segment(w, APP0, &jfif)?;
                }
            }
            APP1 => {
                if !seen_exif && payload.starts_with(EXIF_HEADER) {
                    seen_exif = true;
                    orientation = tiff_orientation(&payload[EXIF_HEADER.len()..]);
                    if let Some(o) = kept_orientation(orientation) {
                        let mut exif = [0; 32];
                        exif[..6].copy_from_slice(EXIF_HEADER);
                        exif[6..].copy_from_slice(&orientation_tiff(o));
                        write_segment(w, APP1, &exif)?;
                    }
                }
            }
            APP2 if payload.starts_with(b"ICC_PROFILE\0") => write_segment(w, marker, payload)?,
            APP14 if payload.starts_with(b"Adobe") => write_segment(w, marker, payload)?,
            APP0..=APP15 | COM => {}
            _ => write_segment(w, marker, payload)?,
        }
        if marker == SOS {
            scanned = true;
            match copy_scan(r, w)? {
                Some(next) => marker = next,
                None => {
                    // Cut short in its data: decoders show what there is,
                    // and so do we, ended properly.
                    w.write_all(&[0xFF, EOI])?;
                    return Ok(orientation);
                }
            }
        } else {
            marker = next_marker(r)?;
        }
    }
}

fn write_segment<W: Write>(w: &mut W, marker: u8, payload: &[u8]) -> Result<(), MediaError> {
    let length = u16::try_from(payload.len() + 2).map_err(|_| bad("JPEG segment too long"))?;
    w.write_all(&[0xFF, marker])?;
    w.write_all(&length.to_be_bytes())?;
    w.write_all(payload)?;
    Ok(())
}

/// The code of the next marker: FF, any number of fill bytes FF, the code.
/// Stray bytes before it are skipped (and so dropped), as libjpeg and
/// browsers skip them.
fn next_marker<R: BufRead>(r: &mut R) -> Result<u8, MediaError> {
    loop {
        if read_u8(r)? != 0xFF {
            continue;
        }
        let code = loop {
            match read_u8(r)? {
                0xFF => continue,
                code => break code,
            }
        };
        if code != 0x00 {
            return Ok(code);
        }
    }
}

/// Copies a scan's entropy-coded data (stuffed FF 00 and restart markers
/// included) and returns the marker after it, or `None` at the end of the
/// file.
fn copy_scan<R: BufRead, W: Write>(r: &mut R, w: &mut W) -> Result<Option<u8>, MediaError> {
    loop {
        let buf = r.fill_buf()?;
        if buf.is_empty() {
            return Ok(None);
        }
        let ff = buf.iter().position(|&b| b == 0xFF);
        let data = ff.unwrap_or(buf.len());
        w.write_all(&buf[..data])?;
        r.consume(data + usize::from(ff.is_some()));
        if ff.is_none() {
            continue;
        }
        let code = loop {
            match next_byte(r)? {
                None => return Ok(None),
                Some(0xFF) => continue, // fill
                Some(code) => break code,
            }
        };
        match code {
            0x00 | 0xD0..=0xD7 => w.write_all(&[0xFF, code])?,
            _ => return Ok(Some(code)),
        }
    }
}

// ---------------------------------------------------------------------------
// PNG: the signature, then chunks (32-bit length, type, data, CRC) to IEND.
// A chunk whose type starts with a capital is critical (a decoder must
// understand it): those are all kept.

const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";

/// The ancillary chunks kept: how the pixels look (transparency, colour
/// space, gamma, significant bits, background, pixel size, histogram) and
/// APNG animation.
const PNG_KEPT: [&[u8; 4]; 15] = [
    b"tRNS", b"gAMA", b"cHRM", b"sRGB", b"iCCP", b"cICP", b"mDCV", b"cLLI", b"sBIT", b"bKGD",
    b"pHYs", b"hIST", b"acTL", b"fcTL", b"fdAT",
];

fn strip_png<R: BufRead, W: Write>(r: &mut R, w: &mut W) -> Result<Option<u8>, MediaError> {
    let mut signature = [0; 8];
    read_exact(r, &mut signature)?;
    if signature != PNG_SIGNATURE {
        return Err(bad("not a PNG: no signature"));
    }
    w.write_all(&signature)?;
    let mut orientation = None;
    let mut seen_exif = false;
    let mut first = true;
    loop {
        let mut header = [0; 8];
        read_exact(r, &mut header)?;
        let length = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
        let kind = [header[4], header[5], header[6], header[7]];
        if length > 0x7FFF_FFFF || !kind.iter().all(u8::is_ascii_alphabetic) {
            return Err(bad("PNG: a malformed chunk header"));
        }
        if first != (&kind == b"IHDR") {
            return Err(bad("PNG: IHDR is not the first chunk, or not the only one"));
        }
        first = false;
        // With its CRC.
        let length = u64::from(length) + 4;
        if &kind == b"eXIf" && !seen_exif {
            seen_exif = true;
            let exif = read_prefix(r, length)?;
            orientation = tiff_orientation(&exif[..exif.len().saturating_sub(4)]);
            if let Some(o) = kept_orientation(orientation) {
                write_png_chunk(w, b"eXIf", &orientation_tiff(o))?;
            }
        } else if kind[0].is_ascii_uppercase() || PNG_KEPT.contains(&&kind) {
            w.write_all(&header)?;
            copy_exact(r, w, length)?;
        } else {
            skip_exact(r, length)?;
        }
        if &kind == b"IEND" {
            return Ok(orientation);
        }
    }
}

fn write_png_chunk<W: Write>(w: &mut W, kind: &[u8; 4], data: &[u8]) -> Result<(), MediaError> {
    let length = u32::try_from(data.len()).map_err(|_| bad("PNG chunk too long"))?;
    w.write_all(&length.to_be_bytes())?;
    w.write_all(kind)?;
    w.write_all(data)?;
    w.write_all(&crc32(&[kind, data]).to_be_bytes())?;
    Ok(())
}

/// The CRC-32 of PNG chunks (ISO 3309), bit by bit: it only ever covers
/// the few bytes of a chunk written here.
fn crc32(parts: &[&[u8]]) -> u32 {
    let mut crc = !0u32;
    for &byte in parts.iter().flat_map(|part| part.iter()) {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

// ---------------------------------------------------------------------------
// WebP: a RIFF file, "RIFF", its size, "WEBP", then chunks (FourCC, 32-bit
// little-endian size, data, a pad byte when the size is odd). Metadata needs
// the extended format (a VP8X chunk first, whose flags say what follows).

const VP8X_EXIF: u8 = 0x08;
const VP8X_XMP: u8 = 0x04;

/// The chunks kept: the image (lossy, lossless, alpha), animation, ICC.
const WEBP_KEPT: [&[u8; 4]; 6] = [b"VP8 ", b"VP8L", b"ALPH", b"ANIM", b"ANMF", b"ICCP"];

fn strip_webp<R: BufRead + Seek, W: Write>(r: &mut R, w: &mut W) -> Result<Option<u8>, MediaError> {
    let mut header = [0; 12];
    read_exact(r, &mut header)?;
    if !header.starts_with(b"RIFF") || &header[8..12] != b"WEBP" {
        return Err(bad("not a WebP: no RIFF WEBP header"));
    }
    let riff_size = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    let end = 8 + u64::from(riff_size);
    let file_size = r.seek(SeekFrom::End(0))?;
    if end > file_size {
        return Err(bad("WebP: the file is shorter than its RIFF size"));
    }
    // Two walks: the first measures what is kept (the RIFF size comes
    // first), the second writes it.
    r.seek(SeekFrom::Start(12))?;
    let measured = walk_webp(r, end, None::<&mut W>, false)?;
    let size = u32::try_from(measured.size).map_err(|_| bad("WebP: too large"))?;
    w.write_all(b"RIFF")?;
    w.write_all(&size.to_le_bytes())?;
    w.write_all(b"WEBP")?;
    r.seek(SeekFrom::Start(12))?;
    walk_webp(r, end, Some(w), measured.keeps_orientation)?;
    Ok(measured.orientation)
}

struct WebpWalk {
    /// The RIFF size of what is kept ("WEBP" and the chunks).
    size: u64,
    orientation: Option<u8>,
    /// Whether a minimal EXIF chunk is written (the VP8X flag says so).
    keeps_orientation: bool,
}

/// Walks the chunks from the current position to `end`, writing what is
/// kept to `out` when there is one; `keeps_orientation` is the first walk's
/// answer, for the VP8X flags that come before the EXIF chunk.
fn walk_webp<R: BufRead + Seek, W: Write>(
    r: &mut R,
    end: u64,
    mut out: Option<&mut W>,
    keeps_orientation: bool,
) -> Result<WebpWalk, MediaError> {
    let mut walk = WebpWalk {
        size: 4,
        orientation: None,
        keeps_orientation: false,
    };
    let mut position = 12;
    let mut extended = false;
    let mut seen_exif = false;
    while position < end {
        if end - position < 8 {
            return Err(bad("WebP: a chunk header is cut off"));
        }
        let mut header = [0; 8];
        read_exact(r, &mut header)?;
        let kind = [header[0], header[1], header[2], header[3]];
        let length = u64::from(u32::from_le_bytes([
            header[4], header[5], header[6], header[7],
        ]));
        let room = end - position - 8;
        if length > room {
            return Err(bad("WebP: a chunk runs past the end of the file"));
        }
        // The pad byte, when the file has it (some writers leave out the
        // last one); written back always.
        let pad = (length & 1).min(room - length);
        let padded = length + (length & 1);
        if position == 12 {
            match &kind {
                b"VP8X" => extended = true,
                b"VP8 " | b"VP8L" => {}
                _ => return Err(bad("WebP: no image chunk first")),
            }
        } else if &kind == b"VP8X" {
            return Err(bad("WebP: a second VP8X chunk"));
        }
        position += 8 + length + pad;

        if &kind == b"VP8X" {
            let mut flags = [0; 10];
            if length != 10 {
                return Err(bad("WebP: a VP8X chunk of the wrong size"));
            }
            read_exact(r, &mut flags)?;
            flags[0] &= !(VP8X_EXIF | VP8X_XMP);
            if keeps_orientation {
                flags[0] |= VP8X_EXIF;
            }
            if let Some(w) = out.as_deref_mut() {
                w.write_all(&header)?;
                w.write_all(&flags)?;
            }
            walk.size += 8 + 10;
        } else if &kind == b"EXIF" && extended && !seen_exif {
            seen_exif = true;
            let exif = read_prefix(r, length)?;
            // Raw TIFF, as the format says; some writers put JPEG's
            // "Exif\0\0" first.
            let tiff = exif.strip_prefix(EXIF_HEADER).unwrap_or(&exif);
            walk.orientation = tiff_orientation(tiff);
            if let Some(o) = kept_orientation(walk.orientation) {
                let tiff = orientation_tiff(o);
                if let Some(w) = out.as_deref_mut() {
                    w.write_all(b"EXIF")?;
                    w.write_all(&26u32.to_le_bytes())?;
                    w.write_all(&tiff)?;
                }
                walk.size += 8 + 26;
                walk.keeps_orientation = true;
            }
        } else if WEBP_KEPT.contains(&&kind) {
            match out.as_deref_mut() {
                Some(w) => {
                    w.write_all(&header)?;
                    copy_exact(r, w, length)?;
                    if length & 1 == 1 {
                        w.write_all(&[0])?;
                    }
                }
                None => skip_exact(r, length)?,
            }
            walk.size += 8 + padded;
        } else {
            skip_exact(r, length)?;
        }
        skip_exact(r, pad)?;
    }
    if walk.size == 4 {
        return Err(bad("WebP: no image"));
    }
    Ok(walk)
}

// ---------------------------------------------------------------------------
// GIF: header and logical screen, a global colour table maybe, then blocks:
// images (0x2C), extensions (0x21, a label, then data sub-blocks of at most
// 255 bytes each, ended by an empty one), the trailer (0x3B).

const GIF_TRAILER: u8 = 0x3B;

/// Application extensions kept: looping, and the ICC profile.
const GIF_KEPT_APPLICATIONS: [&[u8; 11]; 3] = [b"NETSCAPE2.0", b"ANIMEXTS1.0", b"ICCRGBG1012"];

fn strip_gif<R: BufRead, W: Write>(r: &mut R, w: &mut W) -> Result<(), MediaError> {
    let mut screen = [0; 13];
    read_exact(r, &mut screen)?;
    if !screen.starts_with(b"GIF87a") && !screen.starts_with(b"GIF89a") {
        return Err(bad("not a GIF: no signature"));
    }
    w.write_all(&screen)?;
    copy_colour_table(r, w, screen[10])?;
    let mut block = [0; 255];
    loop {
        let Some(introducer) = next_byte(r)? else {
            // Many GIFs lack the trailer; decoders do without it, ours is
            // well-formed.
            w.write_all(&[GIF_TRAILER])?;
            return Ok(());
        };
        match introducer {
            GIF_TRAILER => {
                w.write_all(&[GIF_TRAILER])?;
                return Ok(());
            }
            0x2C => {
                let mut descriptor = [0; 9];
                read_exact(r, &mut descriptor)?;
                w.write_all(&[introducer])?;
                w.write_all(&descriptor)?;
                copy_colour_table(r, w, descriptor[8])?;
                let code_size = read_u8(r)?;
                w.write_all(&[code_size])?;
                sub_blocks(r, Some(w), &mut block)?;
            }
            0x21 => match read_u8(r)? {
                // Graphic control (delays, transparency), plain text.
                label @ (0xF9 | 0x01) => {
                    w.write_all(&[introducer, label])?;
                    sub_blocks(r, Some(w), &mut block)?;
                }
                0xFF => {
                    let length = usize::from(read_u8(r)?);
                    let name = &mut block[..length];
                    read_exact(r, name)?;
                    if GIF_KEPT_APPLICATIONS.iter().any(|kept| kept[..] == *name) {
                        w.write_all(&[introducer, 0xFF, 11])?;
                        w.write_all(name)?;
                        sub_blocks(r, Some(w), &mut block)?;
                    } else if length != 0 {
                        sub_blocks(r, None::<&mut W>, &mut block)?;
                    }
                }
                // Comments (0xFE) and unknown extensions.
                _ => sub_blocks(r, None::<&mut W>, &mut block)?,
            },
            _ => return Err(bad("GIF: an unknown block")),
        }
    }
}

/// A colour table follows when the flags' top bit is set: 3 × 2^(n+1) bytes.
fn copy_colour_table<R: Read, W: Write>(r: &mut R, w: &mut W, flags: u8) -> Result<(), MediaError> {
    if flags & 0x80 != 0 {
        copy_exact(r, w, 3 << ((flags & 7) + 1))?;
    }
    Ok(())
}

/// Copies (or, without `out`, skips) data sub-blocks up to the empty one.
fn sub_blocks<R: Read, W: Write>(
    r: &mut R,
    mut out: Option<&mut W>,
    block: &mut [u8; 255],
) -> Result<(), MediaError> {
    loop {
        let length = read_u8(r)?;
        let data = &mut block[..usize::from(length)];
        read_exact(r, data)?;
        if let Some(w) = out.as_deref_mut() {
            w.write_all(&[length])?;
            w.write_all(data)?;
        }
        if length == 0 {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;
    use std::path::PathBuf;
    use std::time::{Duration, Instant};

    use image::codecs::gif::{GifEncoder, Repeat};
    use image::codecs::webp::WebPEncoder;
    use image::{ImageBuffer, Rgb, RgbImage, Rgba};

    use super::*;

    // --- Fixtures, made at run time -------------------------------------

    fn gradient(width: u32, height: u32) -> RgbImage {
        ImageBuffer::from_fn(width, height, |x, y| {
            Rgb([(x * 255 / width) as u8, (y * 255 / height) as u8, 128])
        })
    }

    fn jpeg(width: u32, height: u32) -> Vec<u8> {
        let mut out = Vec::new();
        JpegEncoder::new_with_quality(&mut out, 90)
            .encode_image(&gradient(width, height))
            .unwrap();
        out
    }

    fn png_of(image: &DynamicImage) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        image.write_to(&mut out, ImageFormat::Png).unwrap();
        out.into_inner()
    }

    fn png(width: u32, height: u32) -> Vec<u8> {
        png_of(&DynamicImage::ImageRgb8(gradient(width, height)))
    }

    fn webp(width: u32, height: u32) -> Vec<u8> {
        let mut out = Vec::new();
        WebPEncoder::new_lossless(&mut out)
            .encode(
                gradient(width, height).as_raw(),
                width,
                height,
                ExtendedColorType::Rgb8,
            )
            .unwrap();
        out
    }

    fn gif(width: u32, height: u32) -> Vec<u8> {
        let mut out = Vec::new();
        {
            let mut encoder = GifEncoder::new(&mut out);
            encoder.set_repeat(Repeat::Infinite).unwrap();
            encoder
                .encode(
                    gradient(width, height).as_raw(),
                    width,
                    height,
                    ExtendedColorType::Rgb8,
                )
                .unwrap();
        }
        out
    }

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        count(haystack, needle) > 0
    }

    fn count(haystack: &[u8], needle: &[u8]) -> usize {
        haystack
            .windows(needle.len())
            .filter(|w| *w == needle)
            .count()
    }

    fn find(haystack: &[u8], needle: &[u8]) -> usize {
        haystack
            .windows(needle.len())
            .position(|w| w == needle)
            .unwrap()
    }

    /// 48° 51' 29.22": a latitude, as three rationals.
    const GPS_LATITUDE: [u8; 24] = [
        48, 0, 0, 0, 1, 0, 0, 0, 51, 0, 0, 0, 1, 0, 0, 0, 0x6A, 0x0B, 0, 0, 100, 0, 0, 0,
    ];

    /// An Exif TIFF structure as a camera writes it (little-endian): the
    /// make, the orientation, and a GPS directory with a latitude.
    fn camera_exif(orientation: u16) -> Vec<u8> {
        fn entry(tiff: &mut Vec<u8>, tag: u16, kind: u16, count: u32, value: [u8; 4]) {
            tiff.extend(tag.to_le_bytes());
            tiff.extend(kind.to_le_bytes());
            tiff.extend(count.to_le_bytes());
            tiff.extend(value);
        }
        let mut tiff = b"II*\0\x08\0\0\0".to_vec();
        // IFD0, at 8.
        tiff.extend(3u16.to_le_bytes());
        entry(&mut tiff, 0x010F, 2, 10, 80u32.to_le_bytes()); // Make
        let [lo, hi] = orientation.to_le_bytes();
        entry(&mut tiff, ORIENTATION_TAG, 3, 1, [lo, hi, 0, 0]);
        entry(&mut tiff, 0x8825, 4, 1, 50u32.to_le_bytes()); // GPS IFD
        tiff.extend(0u32.to_le_bytes());
        assert_eq!(tiff.len(), 50);
        tiff.extend(2u16.to_le_bytes());
        entry(&mut tiff, 0x0001, 2, 2, *b"N\0\0\0"); // GPSLatitudeRef
        entry(&mut tiff, 0x0002, 5, 3, 90u32.to_le_bytes()); // GPSLatitude
        tiff.extend(0u32.to_le_bytes());
        assert_eq!(tiff.len(), 80);
        tiff.extend(b"NatterCam\0");
        tiff.extend(GPS_LATITUDE);
        tiff
    }

    fn segment(marker: u8, payload: &[u8]) -> Vec<u8> {
        let length = u16::try_from(payload.len() + 2).unwrap();
        [&[0xFF, marker], &length.to_be_bytes()[..], payload].concat()
    }

    fn exif_segment(tiff: &[u8]) -> Vec<u8> {
        segment(APP1, &[EXIF_HEADER, tiff].concat())
    }

    /// `segments` inserted right after the SOI of `jpeg`.
    fn jpeg_with(segments: &[Vec<u8>], jpeg: &[u8]) -> Vec<u8> {
        [&jpeg[..2], &segments.concat(), &jpeg[2..]].concat()
    }

    fn png_chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
        let length = u32::try_from(data.len()).unwrap();
        [
            &length.to_be_bytes()[..],
            kind,
            data,
            &crc32(&[kind, data]).to_be_bytes(),
        ]
        .concat()
    }

    /// `chunks` inserted right after the IHDR of `png`.
    fn png_with(chunks: &[Vec<u8>], png: &[u8]) -> Vec<u8> {
        assert_eq!(&png[12..16], b"IHDR");
        [&png[..33], &chunks.concat(), &png[33..]].concat()
    }

    fn riff_chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
        let length = u32::try_from(data.len()).unwrap();
        let pad: &[u8] = if data.len() % 2 == 1 { &[0] } else { &[] };
        [kind, &length.to_le_bytes()[..], data, pad].concat()
    }

    /// An extended WebP (VP8X with `flags`) around a lossless image, with
    /// `chunks` after the image.
    fn webp_extended(width: u32, height: u32, flags: u8, chunks: &[Vec<u8>]) -> Vec<u8> {
        let simple = webp(width, height);
        assert_eq!(&simple[12..16], b"VP8L");
        let mut vp8x = [0; 10];
        vp8x[0] = flags;
        vp8x[4..7].copy_from_slice(&(width - 1).to_le_bytes()[..3]);
        vp8x[7..10].copy_from_slice(&(height - 1).to_le_bytes()[..3]);
        let body = [
            &b"WEBP"[..],
            &riff_chunk(b"VP8X", &vp8x),
            &simple[12..],
            &chunks.concat(),
        ]
        .concat();
        let size = u32::try_from(body.len()).unwrap();
        [&b"RIFF"[..], &size.to_le_bytes(), &body].concat()
    }

    fn strip_bytes(content_type: &str, bytes: &[u8]) -> Result<Vec<u8>, MediaError> {
        let dir = tempfile::tempdir().unwrap();
        let (src, dst) = (dir.path().join("upload"), dir.path().join("stripped"));
        fs::write(&src, bytes).unwrap();
        let stripped = strip_metadata(content_type, &src, &dst);
        match stripped {
            Ok(()) => Ok(fs::read(&dst).unwrap()),
            Err(e) => {
                assert!(!dst.exists(), "a failed strip leaves nothing behind");
                Err(e)
            }
        }
    }

    fn process_bytes(
        content_type: &str,
        bytes: &[u8],
        limits: &ImageLimits,
    ) -> Result<Processed, MediaError> {
        let dir = tempfile::tempdir().unwrap();
        let path: PathBuf = dir.path().join("upload");
        fs::write(&path, bytes).unwrap();
        process_image(&path, content_type, limits)
    }

    fn process(content_type: &str, bytes: &[u8]) -> Processed {
        process_bytes(content_type, bytes, &ImageLimits::default()).unwrap()
    }

    fn decode(bytes: &[u8]) -> DynamicImage {
        image::load_from_memory(bytes).unwrap()
    }

    fn is_undecodable<T: fmt::Debug>(result: &Result<T, MediaError>) -> bool {
        matches!(result, Err(MediaError::Undecodable(_)))
    }

    // --- sniff ------------------------------------------------------------

    #[test]
    fn sniff_knows_images_by_their_signatures() {
        assert_eq!(sniff(&png(2, 2)), "image/png");
        assert_eq!(sniff(&jpeg(2, 2)), "image/jpeg");
        assert_eq!(sniff(&gif(2, 2)), "image/gif");
        assert_eq!(sniff(&webp(2, 2)), "image/webp");
        for image in [png(2, 2), jpeg(2, 2), gif(2, 2), webp(2, 2)] {
            assert!(INLINE_IMAGES.contains(&sniff(&image)));
        }
    }

    #[test]
    fn sniff_never_labels_markup_or_text() {
        for text in [
            &b"<html><script>alert(document.cookie)</script></html>"[..],
            b"  \n<!DOCTYPE html><p>hello",
            b"<svg xmlns=\"http://www.w3.org/2000/svg\"><script>alert(1)</script></svg>",
            b"<?xml version=\"1.0\"?><svg xmlns=\"http://www.w3.org/2000/svg\"/>",
            b"\xEF\xBB\xBF<?xml version=\"1.0\"?><html/>",
            b"#!/bin/sh\nrm -rf /\n",
            b"alert(1)",
            b"just some text",
            b"RIFF",
            b"",
        ] {
            assert_eq!(
                sniff(text),
                OCTET_STREAM,
                "{:?}",
                String::from_utf8_lossy(text)
            );
        }
    }

    #[test]
    fn sniff_names_other_binary_formats() {
        assert_eq!(
            sniff(b"%PDF-1.7\n%\xE2\xE3\xCF\xD3\n1 0 obj"),
            "application/pdf"
        );
        assert_eq!(sniff(b"PK\x03\x04\x14\0\0\0\x08\0"), "application/zip");
        assert_eq!(sniff(b"\x1A\x45\xDF\xA3\x9F\x42\x86\x81\x01\x42\xF7\x81\x01\x42\xF2\x81\x04\x42\xF3\x81\x08\x42\x82\x84webm"), "video/webm");
    }

    // --- JPEG ---------------------------------------------------------------

    #[test]
    fn jpeg_loses_its_metadata_and_keeps_its_orientation() {
        let original = [
            jpeg_with(
                &[
                    exif_segment(&camera_exif(6)),
                    segment(APP1, b"http://ns.adobe.com/xap/1.0/\0<x:xmpmeta>XMP-SECRET"),
                    segment(0xED, b"Photoshop 3.0\08BIM IPTC-SECRET"),
                    segment(APP2, b"ICC_PROFILE\0\x01\x01not really a profile"),
                    segment(APP2, b"MPF\0MPF-SECRET"),
                    segment(COM, b"COMMENT-SECRET"),
                ],
                &jpeg(40, 20),
            ),
            b"TRAILER-SECRET".to_vec(),
        ]
        .concat();

        let stripped = strip_bytes("image/jpeg", &original).unwrap();
        assert_eq!(count(&stripped, b"Exif"), 1);
        let minimal = [EXIF_HEADER, &orientation_tiff(6)].concat();
        assert!(contains(&stripped, &segment(APP1, &minimal)));
        assert!(!contains(&stripped, b"NatterCam"));
        assert!(!contains(&stripped, &GPS_LATITUDE));
        assert!(!contains(&stripped, b"SECRET"));
        assert!(contains(&stripped, b"ICC_PROFILE\0"));
        assert!(contains(&stripped, b"JFIF\0"));
        assert!(stripped.ends_with(&[0xFF, EOI]));

        assert_eq!(decode(&stripped).dimensions(), (40, 20));
        let mut decoder = image::codecs::jpeg::JpegDecoder::new(Cursor::new(&stripped)).unwrap();
        assert_eq!(decoder.orientation().unwrap(), Orientation::Rotate90);

        for bytes in [&original, &stripped] {
            let processed = process("image/jpeg", bytes);
            assert_eq!((processed.width, processed.height), (20, 40));
            assert_eq!(processed.thumbnail_type, "image/jpeg");
            assert_eq!(decode(&processed.thumbnail).dimensions(), (20, 40));
        }
    }

    #[test]
    fn jpeg_with_upright_exif_keeps_none() {
        let original = jpeg_with(&[exif_segment(&camera_exif(1))], &jpeg(40, 20));
        let stripped = strip_bytes("image/jpeg", &original).unwrap();
        assert!(!contains(&stripped, b"Exif"));
        assert!(!contains(&stripped, b"NatterCam"));
        assert_eq!(decode(&stripped).dimensions(), (40, 20));
        let processed = process("image/jpeg", &stripped);
        assert_eq!((processed.width, processed.height), (40, 20));
    }

    #[test]
    fn jpeg_stray_bytes_between_segments_are_dropped() {
        let original = jpeg_with(
            &[exif_segment(&camera_exif(3)), b"\0\0STRAY".to_vec()],
            &jpeg(40, 20),
        );
        let stripped = strip_bytes("image/jpeg", &original).unwrap();
        assert!(!contains(&stripped, b"STRAY"));
        assert_eq!(decode(&stripped).dimensions(), (40, 20));
        let processed = process("image/jpeg", &stripped);
        assert_eq!((processed.width, processed.height), (40, 20));
    }

    #[test]
    fn jpeg_big_endian_exif_orientation_is_read() {
        let mut tiff = b"MM\0*\0\0\0\x08\0\x02".to_vec();
        tiff.extend([0x01, 0x10, 0, 2, 0, 0, 0, 4]); // Model, ASCII, 4
        tiff.extend(b"Cam\0");
        tiff.extend([0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, 8, 0, 0]); // Orientation 8
        tiff.extend([0, 0, 0, 0]);
        let original = jpeg_with(&[exif_segment(&tiff)], &jpeg(40, 20));
        let stripped = strip_bytes("image/jpeg", &original).unwrap();
        let minimal = [EXIF_HEADER, &orientation_tiff(8)].concat();
        assert!(contains(&stripped, &segment(APP1, &minimal)));
        assert!(!contains(&stripped, b"Cam\0"));
        let processed = process("image/jpeg", &stripped);
        assert_eq!((processed.width, processed.height), (20, 40));
    }

    #[test]
    fn tiff_orientation_is_careful() {
        assert_eq!(tiff_orientation(&camera_exif(6)), Some(6));
        assert_eq!(tiff_orientation(&orientation_tiff(3)), Some(3));
        assert_eq!(tiff_orientation(&camera_exif(0)), None);
        assert_eq!(tiff_orientation(&camera_exif(9)), None);
        assert_eq!(tiff_orientation(b""), None);
        assert_eq!(tiff_orientation(b"II*\0"), None);
        assert_eq!(tiff_orientation(b"II*\0\xFF\xFF\xFF\xFF"), None);
        assert_eq!(tiff_orientation(b"MM\0*\0\0\0\x08\xFF\xFF"), None);
        assert_eq!(tiff_orientation(b"XX*\0\x08\0\0\0\x01\0"), None);
        let exif = camera_exif(6);
        for end in 0..exif.len() {
            let _ = tiff_orientation(&exif[..end]);
        }
    }

    #[test]
    fn malformed_jpegs_are_undecodable() {
        let real = jpeg(16, 16);
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("empty", vec![]),
            ("only SOI", vec![0xFF, 0xD8]),
            ("not a JPEG", b"hello, world".to_vec()),
            (
                "a length past the end",
                [&[0xFF, 0xD8, 0xFF, 0xE1, 0xFF, 0xFF][..], b"Exif\0\0II"].concat(),
            ),
            (
                "a length of 0",
                vec![0xFF, 0xD8, 0xFF, 0xE1, 0, 0, 0xFF, 0xD9],
            ),
            (
                "a length of 1",
                vec![0xFF, 0xD8, 0xFF, 0xE1, 0, 1, 0xFF, 0xD9],
            ),
            ("a length cut in half", vec![0xFF, 0xD8, 0xFF, 0xE1, 0]),
            (
                "garbage where a marker goes",
                vec![0xFF, 0xD8, 0x12, 0x34, 0x56, 0x78],
            ),
            ("EOI before any scan", vec![0xFF, 0xD8, 0xFF, 0xD9]),
            (
                "a stray restart marker",
                vec![0xFF, 0xD8, 0xFF, 0xD0, 0xFF, 0xD9],
            ),
            ("a second SOI", vec![0xFF, 0xD8, 0xFF, 0xD8]),
            ("cut in its headers", real[..100].to_vec()),
            (
                "a 64 KiB Exif cut short",
                [&[0xFF, 0xD8, 0xFF, 0xE1, 0xFF, 0xFF][..], &camera_exif(6)].concat(),
            ),
        ];
        for (what, bytes) in cases {
            let stripped = strip_bytes("image/jpeg", &bytes);
            assert!(is_undecodable(&stripped), "{what}: {stripped:?}");
            let processed = process_bytes("image/jpeg", &bytes, &ImageLimits::default());
            assert!(is_undecodable(&processed), "{what}: {processed:?}");
        }
    }

    // --- PNG ----------------------------------------------------------------

    #[test]
    fn png_loses_its_metadata() {
        let original = [
            png_with(
                &[
                    png_chunk(b"tEXt", b"Comment\0TEXT-SECRET"),
                    png_chunk(b"eXIf", &camera_exif(1)),
                    png_chunk(b"tIME", &[0x07, 0xE9, 6, 1, 12, 0, 0]),
                    png_chunk(b"iTXt", b"XML:com.adobe.xmp\0\0\0\0\0XMP-SECRET"),
                    png_chunk(b"prVt", b"PRIVATE-SECRET"),
                    png_chunk(b"gAMA", &45455u32.to_be_bytes()),
                ],
                &png(30, 10),
            ),
            b"TRAILER-SECRET".to_vec(),
        ]
        .concat();
        assert_eq!(decode(&original).dimensions(), (30, 10));

        let stripped = strip_bytes("image/png", &original).unwrap();
        for gone in [
            &b"SECRET"[..],
            b"tEXt",
            b"eXIf",
            b"tIME",
            b"iTXt",
            b"prVt",
            b"NatterCam",
        ] {
            assert!(
                !contains(&stripped, gone),
                "{}",
                String::from_utf8_lossy(gone)
            );
        }
        assert!(!contains(&stripped, &GPS_LATITUDE));
        assert!(contains(
            &stripped,
            &png_chunk(b"gAMA", &45455u32.to_be_bytes())
        ));
        assert!(stripped.ends_with(&png_chunk(b"IEND", b"")));
        assert_eq!(decode(&stripped), decode(&original));
    }

    #[test]
    fn png_keeps_its_orientation_alone() {
        let original = png_with(&[png_chunk(b"eXIf", &camera_exif(6))], &png(30, 10));
        let stripped = strip_bytes("image/png", &original).unwrap();
        assert!(contains(
            &stripped,
            &png_chunk(b"eXIf", &orientation_tiff(6))
        ));
        assert!(!contains(&stripped, b"NatterCam"));
        let mut decoder = image::codecs::png::PngDecoder::new(Cursor::new(&stripped)).unwrap();
        assert_eq!(decoder.orientation().unwrap(), Orientation::Rotate90);
        for bytes in [&original, &stripped] {
            let processed = process("image/png", bytes);
            assert_eq!((processed.width, processed.height), (10, 30));
        }
    }

    #[test]
    fn malformed_pngs_are_undecodable() {
        let real = png(8, 8);
        let mut huge_chunk = real[..33].to_vec();
        huge_chunk.extend([0x7F, 0xFF, 0xFF, 0xFF]);
        huge_chunk.extend(b"tEXt");
        huge_chunk.extend(b"a little");
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("empty", vec![]),
            ("only the signature", PNG_SIGNATURE.to_vec()),
            (
                "no IHDR first",
                [PNG_SIGNATURE, &png_chunk(b"tEXt", b"a\0b")].concat(),
            ),
            ("no IEND", real[..real.len() - 12].to_vec()),
            ("cut in a chunk", real[..40].to_vec()),
            ("a chunk longer than the file", huge_chunk),
            (
                "a length over 2^31",
                [&real[..33], &[0xFF; 4][..], b"IDAT"].concat(),
            ),
            (
                "a chunk type that is not letters",
                [&real[..33], &[0, 0, 0, 0][..], b"ID\0T"].concat(),
            ),
        ];
        for (what, bytes) in cases {
            let stripped = strip_bytes("image/png", &bytes);
            assert!(is_undecodable(&stripped), "{what}: {stripped:?}");
        }
    }

    // --- WebP ---------------------------------------------------------------

    #[test]
    fn webp_loses_its_metadata_and_keeps_its_orientation() {
        let original = [
            webp_extended(
                40,
                20,
                VP8X_EXIF | VP8X_XMP,
                &[
                    riff_chunk(b"EXIF", &camera_exif(6)),
                    riff_chunk(b"XMP ", b"<x:xmpmeta>XMP-SECRET</x:xmpmeta>"),
                    riff_chunk(b"prVt", b"PRIVATE-SECRET"),
                ],
            ),
            b"TRAILER-SECRET".to_vec(),
        ]
        .concat();
        assert_eq!(decode(&original).dimensions(), (40, 20));

        let stripped = strip_bytes("image/webp", &original).unwrap();
        assert!(!contains(&stripped, b"SECRET"));
        assert!(!contains(&stripped, b"NatterCam"));
        assert!(!contains(&stripped, &GPS_LATITUDE));
        assert!(!contains(&stripped, b"XMP "));
        assert!(contains(
            &stripped,
            &riff_chunk(b"EXIF", &orientation_tiff(6))
        ));
        let riff_size = u32::from_le_bytes(stripped[4..8].try_into().unwrap());
        assert_eq!(riff_size as usize, stripped.len() - 8);
        assert_eq!(&stripped[12..16], b"VP8X");
        assert_eq!(stripped[20], VP8X_EXIF);

        assert_eq!(decode(&stripped), decode(&original));
        let mut decoder = image::codecs::webp::WebPDecoder::new(Cursor::new(&stripped)).unwrap();
        assert_eq!(decoder.orientation().unwrap(), Orientation::Rotate90);
        for bytes in [&original, &stripped] {
            let processed = process("image/webp", bytes);
            assert_eq!((processed.width, processed.height), (20, 40));
            assert_eq!(decode(&processed.thumbnail).dimensions(), (20, 40));
        }
    }

    #[test]
    fn webp_with_upright_exif_keeps_none() {
        let original = webp_extended(40, 20, VP8X_EXIF, &[riff_chunk(b"EXIF", &camera_exif(1))]);
        let stripped = strip_bytes("image/webp", &original).unwrap();
        assert!(!contains(&stripped, b"EXIF"));
        assert_eq!(stripped[20], 0);
        let riff_size = u32::from_le_bytes(stripped[4..8].try_into().unwrap());
        assert_eq!(riff_size as usize, stripped.len() - 8);
        assert_eq!(decode(&stripped).dimensions(), (40, 20));
        // A simple WebP has nothing to lose.
        let simple = webp(40, 20);
        assert_eq!(strip_bytes("image/webp", &simple).unwrap(), simple);
    }

    #[test]
    fn malformed_webps_are_undecodable() {
        let real = webp_extended(8, 8, 0, &[]);
        let mut longer_riff = real.clone();
        longer_riff[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        let mut longer_chunk = real.clone();
        longer_chunk[16..20].copy_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("empty", vec![]),
            ("a header alone", b"RIFF\x04\0\0\0WEBP".to_vec()),
            ("not WEBP", b"RIFF\x04\0\0\0WAVE".to_vec()),
            ("a RIFF size past the end", longer_riff),
            ("a chunk past the end", longer_chunk),
            ("cut in a chunk", real[..30].to_vec()),
        ];
        for (what, bytes) in cases {
            let stripped = strip_bytes("image/webp", &bytes);
            assert!(is_undecodable(&stripped), "{what}: {stripped:?}");
        }
    }

    // --- GIF ----------------------------------------------------------------

    #[test]
    fn gif_loses_comments_and_xmp() {
        let plain = gif(30, 10);
        assert_eq!(*plain.last().unwrap(), GIF_TRAILER);
        let comment = [&[0x21, 0xFE, 14][..], b"COMMENT-SECRET", &[0]].concat();
        let xmp = [
            &[0x21, 0xFF, 11][..],
            b"XMP DataXMP",
            &[10],
            b"XMP-SECRET",
            &[0],
        ]
        .concat();
        let original = [
            &plain[..plain.len() - 1],
            &comment,
            &xmp,
            &[GIF_TRAILER],
            b"TRAILER-SECRET",
        ]
        .concat();
        assert_eq!(decode(&original).dimensions(), (30, 10));

        let stripped = strip_bytes("image/gif", &original).unwrap();
        assert_eq!(stripped, plain);
        assert!(contains(&stripped, b"NETSCAPE2.0"));
        let processed = process("image/gif", &stripped);
        assert_eq!((processed.width, processed.height), (30, 10));
    }

    #[test]
    fn malformed_gifs_are_undecodable() {
        let real = gif(8, 8);
        for (what, bytes) in [
            ("empty", vec![]),
            ("not a GIF", b"GIF00a".to_vec()),
            ("cut in the screen", real[..10].to_vec()),
            ("cut in the image", real[..real.len() - 5].to_vec()),
            (
                "an unknown block",
                [&real[..real.len() - 1], &[0x42][..]].concat(),
            ),
        ] {
            let stripped = strip_bytes("image/gif", &bytes);
            assert!(is_undecodable(&stripped), "{what}: {stripped:?}");
        }
    }

    #[test]
    fn only_inline_images_are_stripped_or_processed() {
        for content_type in [
            OCTET_STREAM,
            "application/pdf",
            "image/svg+xml",
            "text/html",
        ] {
            assert!(is_undecodable(&strip_bytes(content_type, b"%PDF-1.7")));
            assert!(is_undecodable(&process_bytes(
                content_type,
                b"%PDF-1.7",
                &ImageLimits::default()
            )));
        }
        // The type is the decoder's: a PNG is not a JPEG.
        assert!(is_undecodable(&strip_bytes("image/jpeg", &png(4, 4))));
        assert!(is_undecodable(&process_bytes(
            "image/jpeg",
            &png(4, 4),
            &ImageLimits::default()
        )));
    }

    // --- Decompression bombs and corrupt bodies --------------------------------

    fn assert_bomb(content_type: &str, bomb: &[u8], width: u32, height: u32) {
        let started = Instant::now();
        let result = process_bytes(content_type, bomb, &ImageLimits::default());
        assert!(
            matches!(
                result,
                Err(MediaError::TooManyPixels { width: w, height: h, max: 40_000_000 })
                    if (w, h) == (width, height)
            ),
            "{content_type}: {result:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn png_bomb_is_refused_before_decoding() {
        let mut bomb = png(1, 1);
        bomb[16..20].copy_from_slice(&100_000u32.to_be_bytes());
        bomb[20..24].copy_from_slice(&100_000u32.to_be_bytes());
        let crc = crc32(&[&bomb[12..29]]);
        bomb[29..33].copy_from_slice(&crc.to_be_bytes());
        assert!(bomb.len() < 100);
        assert_bomb("image/png", &bomb, 100_000, 100_000);
    }

    #[test]
    fn jpeg_gif_and_webp_bombs_are_refused_before_decoding() {
        let mut jpeg_bomb = jpeg(8, 8);
        let sof = find(&jpeg_bomb, &[0xFF, 0xC0]);
        jpeg_bomb[sof + 5..sof + 7].copy_from_slice(&60_000u16.to_be_bytes());
        jpeg_bomb[sof + 7..sof + 9].copy_from_slice(&60_000u16.to_be_bytes());
        assert_bomb("image/jpeg", &jpeg_bomb, 60_000, 60_000);

        let mut gif_bomb = gif(8, 8);
        gif_bomb[6..10].copy_from_slice(&[0xFF; 4]);
        assert_bomb("image/gif", &gif_bomb, 65_535, 65_535);

        let mut webp_bomb = webp_extended(8, 8, 0, &[]);
        webp_bomb[24..27].copy_from_slice(&(16_384u32 - 1).to_le_bytes()[..3]);
        webp_bomb[27..30].copy_from_slice(&(16_384u32 - 1).to_le_bytes()[..3]);
        assert_bomb("image/webp", &webp_bomb, 16_384, 16_384);
    }

    #[test]
    fn limits_are_the_callers() {
        let small = png(20, 10);
        let few_pixels = ImageLimits {
            max_pixels: 100,
            ..ImageLimits::default()
        };
        assert!(matches!(
            process_bytes("image/png", &small, &few_pixels),
            Err(MediaError::TooManyPixels {
                width: 20,
                height: 10,
                max: 100
            })
        ));
        let little_memory = ImageLimits {
            max_alloc: 100,
            ..ImageLimits::default()
        };
        assert!(is_undecodable(&process_bytes(
            "image/png",
            &small,
            &little_memory
        )));
    }

    #[test]
    fn a_corrupt_body_is_undecodable() {
        let mut corrupt = png(64, 64);
        let idat = find(&corrupt, b"IDAT");
        let length = u32::from_be_bytes(corrupt[idat - 4..idat].try_into().unwrap()) as usize;
        let mut rng = Rng(7);
        // The zlib header stays, the deflate stream is noise.
        for byte in &mut corrupt[idat + 6..idat + 4 + length] {
            *byte = rng.next_u64() as u8;
        }
        let crc = crc32(&[&corrupt[idat..idat + 4 + length]]);
        corrupt[idat + 4 + length..idat + 8 + length].copy_from_slice(&crc.to_be_bytes());
        let processed = process_bytes("image/png", &corrupt, &ImageLimits::default());
        assert!(is_undecodable(&processed), "{processed:?}");
    }

    /// xorshift64*: reproducible noise, no crate.
    struct Rng(u64);

    impl Rng {
        fn next_u64(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next_u64() % n as u64) as usize
        }
    }

    #[test]
    fn mangled_files_never_panic() {
        let fixtures = [
            (
                "image/jpeg",
                jpeg_with(&[exif_segment(&camera_exif(6))], &jpeg(24, 16)),
            ),
            (
                "image/png",
                png_with(&[png_chunk(b"eXIf", &camera_exif(6))], &png(24, 16)),
            ),
            (
                "image/webp",
                webp_extended(24, 16, VP8X_EXIF, &[riff_chunk(b"EXIF", &camera_exif(6))]),
            ),
            ("image/gif", gif(24, 16)),
        ];
        let dir = tempfile::tempdir().unwrap();
        let (src, dst) = (dir.path().join("upload"), dir.path().join("stripped"));
        let mut rng = Rng(0x5EED);
        for (content_type, fixture) in &fixtures {
            for round in 0..300 {
                let mut bytes = fixture.clone();
                match round % 4 {
                    0 => bytes.truncate(rng.below(bytes.len())),
                    1 => {
                        let at = rng.below(bytes.len() - 1);
                        bytes[at..at + 2].copy_from_slice(&[0xFF, 0xFF]);
                    }
                    _ => {
                        for _ in 0..1 + rng.below(4) {
                            let at = rng.below(bytes.len());
                            bytes[at] = rng.next_u64() as u8;
                        }
                    }
                }
                fs::write(&src, &bytes).unwrap();
                let _ = strip_metadata(content_type, &src, &dst);
                if round % 3 == 0 {
                    let _ = process_image(&src, content_type, &ImageLimits::default());
                }
            }
        }
    }

    // --- Thumbnails -----------------------------------------------------------

    #[test]
    fn thumbnail_of_a_large_opaque_image_is_a_400_px_jpeg() {
        let processed = process("image/png", &png(1000, 500));
        assert_eq!((processed.width, processed.height), (1000, 500));
        assert_eq!(processed.thumbnail_type, "image/jpeg");
        assert_eq!(sniff(&processed.thumbnail), "image/jpeg");
        assert_eq!(decode(&processed.thumbnail).dimensions(), (400, 200));

        let portrait = process("image/jpeg", &jpeg(300, 900));
        assert_eq!(decode(&portrait.thumbnail).dimensions(), (133, 400));
    }

    #[test]
    fn thumbnail_with_transparency_is_a_png() {
        let translucent =
            ImageBuffer::from_fn(600, 300, |x, _| Rgba([200, 50, 50, (x % 256) as u8]));
        let processed = process("image/png", &png_of(&DynamicImage::ImageRgba8(translucent)));
        assert_eq!(processed.thumbnail_type, "image/png");
        let thumb = decode(&processed.thumbnail);
        assert_eq!(thumb.dimensions(), (400, 200));
        assert!(thumb.has_alpha());

        // Alpha that is all opaque is no reason for a PNG.
        let opaque = ImageBuffer::from_pixel(60, 30, Rgba([200, 50, 50, 255]));
        let processed = process("image/png", &png_of(&DynamicImage::ImageRgba8(opaque)));
        assert_eq!(processed.thumbnail_type, "image/jpeg");
    }

    #[test]
    fn thumbnail_of_a_small_image_is_not_enlarged() {
        let processed = process("image/png", &png(100, 50));
        assert_eq!((processed.width, processed.height), (100, 50));
        assert_eq!(decode(&processed.thumbnail).dimensions(), (100, 50));
        let grey = DynamicImage::ImageLuma8(ImageBuffer::from_pixel(10, 5, image::Luma([90])));
        let processed = process("image/png", &png_of(&grey));
        assert_eq!(processed.thumbnail_type, "image/jpeg");
        assert_eq!(decode(&processed.thumbnail).dimensions(), (10, 5));
    }

    #[test]
    fn thumbnail_sizes() {
        assert_eq!(thumbnail_size(1000, 500), (400, 200));
        assert_eq!(thumbnail_size(500, 1000), (200, 400));
        assert_eq!(thumbnail_size(400, 400), (400, 400));
        assert_eq!(thumbnail_size(401, 1), (400, 1));
        assert_eq!(thumbnail_size(100_000, 3), (400, 1));
        assert_eq!(thumbnail_size(u32::MAX, u32::MAX), (400, 400));
    }
}
