// Decode chains (spec §3): GDAL's own decompressors (cpl_compressor.h) where
// GDAL has the codec, small decoders for TIFF LZW and PackBits, HDF5 shuffle
// and Fletcher-32, TIFF predictors 2 and 3, and image codecs (JPEG, WebP,
// PNG, ...) decoded by GDAL's raster drivers on an in-memory file.
#include "cri.h"

#include "cpl_compressor.h"
#include "cpl_vsi.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>

#ifdef CRI_HAVE_LERC
#include "Lerc_c_api.h"
#endif

namespace cri
{

namespace
{

/** GDAL raster driver(s) that decode an image codec step. */
std::vector<const char *> ImageDrivers(const std::string &name)
{
    if (name == "jpeg")
        return {"JPEG"};
    if (name == "webp")
        return {"WEBP"};
    if (name == "png")
        return {"PNG"};
    if (name == "jpegxl")
        return {"JPEGXL"};
    if (name == "jpeg2000")
        return {"JP2OpenJPEG", "JP2KAK", "JP2ECW", "JP2Grok"};
    if (name == "lerc")
        return {"MRF"};  // MRF opens raw LERC1/LERC2 blobs
    return {};
}

bool IsImageStep(const std::string &name)
{
#ifdef CRI_HAVE_LERC
    if (name == "lerc")
        return false;  // decoded by liblerc (DecodeLerc)
#endif
    return !ImageDrivers(name).empty();
}

/** unpack_bits (spec §3.1): rows of `rowElems` samples packed MSB first in
 * `bits` bits, each row padded to a byte, to one byte per sample. */
bool UnpackBits(const std::vector<GByte> &in, int bits, size_t rowElems,
                std::vector<GByte> &out)
{
    if ((bits != 1 && bits != 2 && bits != 4) || rowElems == 0)
        return false;
    const size_t rowBytes = (rowElems * bits + 7) / 8;
    const size_t nRows = in.size() / rowBytes;
    out.resize(nRows * rowElems);
    const unsigned mask = (1u << bits) - 1;
    for (size_t r = 0; r < nRows; ++r)
    {
        const GByte *src = in.data() + r * rowBytes;
        GByte *dst = out.data() + r * rowElems;
        for (size_t k = 0; k < rowElems; ++k)
        {
            const size_t bit = k * bits;
            const int shift = 8 - bits - static_cast<int>(bit % 8);
            dst[k] = static_cast<GByte>((src[bit / 8] >> shift) & mask);
        }
    }
    return true;
}

#ifdef CRI_HAVE_LERC
/** A LERC blob through liblerc. The decoded values' bytes are the chunk's
 * bytes in dtype order (big-endian TIFFs store byte-swapped samples in the
 * blob); pixels its mask marks invalid read as NaN for floats, as GDAL's
 * GTiff driver reads them. */
bool DecodeLerc(const Array &a, const std::vector<GByte> &in, size_t cap,
                std::vector<GByte> &out, const std::string &what)
{
    unsigned int info[11] = {};
    if (in.empty() ||
        lerc_getBlobInfo(in.data(), static_cast<unsigned>(in.size()), info,
                         nullptr, 11, 0) != 0)
    {
        CPLError(CE_Failure, CPLE_AppDefined,
                 "CRI: %s: not a LERC blob (corrupt chunk)", what.c_str());
        return false;
    }
    static const int sizes[] = {1, 1, 2, 2, 4, 4, 4, 8};
    const unsigned type = info[1];
    const int depth = static_cast<int>(info[2]), cols = static_cast<int>(info[3]),
              rows = static_cast<int>(info[4]), bands = static_cast<int>(info[5]);
    const int nMasks = static_cast<int>(info[8]);
    if (type > 7 || sizes[type] != a.itemSize)
    {
        CPLError(CE_Failure, CPLE_AppDefined,
                 "CRI: %s: LERC blob of data type %u does not match the "
                 "array's %d-byte samples",
                 what.c_str(), type, a.itemSize);
        return false;
    }
    const size_t nValues = static_cast<size_t>(depth) * cols * rows * bands;
    if (nValues * a.itemSize > cap)
    {
        CPLError(CE_Failure, CPLE_AppDefined,
                 "CRI: %s: LERC blob larger than the chunk", what.c_str());
        return false;
    }
    out.resize(nValues * a.itemSize);
    std::vector<GByte> valid(nMasks > 0 ? static_cast<size_t>(cols) * rows * nMasks : 0);
    if (lerc_decode(in.data(), static_cast<unsigned>(in.size()), nMasks,
                    valid.empty() ? nullptr : valid.data(), depth, cols, rows,
                    bands, type, out.data()) != 0)
    {
        CPLError(CE_Failure, CPLE_AppDefined,
                 "CRI: %s: LERC decoding failed (corrupt chunk)", what.c_str());
        return false;
    }
    if (!valid.empty() && (a.eDT == GDT_Float32 || a.eDT == GDT_Float64))
    {
        GByte nan[8];
        if (a.eDT == GDT_Float32)
        {
            const float v = std::numeric_limits<float>::quiet_NaN();
            std::memcpy(nan, &v, 4);
        }
        else
        {
            const double v = std::numeric_limits<double>::quiet_NaN();
            std::memcpy(nan, &v, 8);
        }
        if (a.swap)
            std::reverse(nan, nan + a.itemSize);
        const size_t pixels = static_cast<size_t>(cols) * rows;
        for (int b = 0; b < bands; ++b)
        {
            // One mask for all bands, or one per band (nMasks == bands).
            const GByte *m = valid.data() +
                             (nMasks > 1 ? std::min(b, nMasks - 1) * pixels : 0);
            for (size_t p = 0; p < pixels; ++p)
                if (!m[p])
                    for (int d = 0; d < depth; ++d)
                        std::memcpy(out.data() + ((b * pixels + p) * depth + d) * a.itemSize,
                                    nan, a.itemSize);
        }
    }
    return true;
}
#endif

const char *DecompressorId(const std::string &name)
{
    if (name == "deflate" || name == "zlib")
        return "zlib";
    if (name == "gzip")
        return "gzip";
    if (name == "zstd")
        return "zstd";
    if (name == "lzma")
        return "lzma";
    if (name == "lz4")
        return "lz4";
    if (name == "blosc")
        return "blosc";
    return nullptr;
}

/** TIFF LZW (MSB-first codes, early change). Returns false on corrupt
 * input. Output is capped at `maxOut` bytes (extra bytes are discarded, as
 * libtiff does for strips longer than needed). */
bool DecodeLZW(const GByte *in, size_t n, std::vector<GByte> &out,
               size_t maxOut)
{
    out.clear();
    out.reserve(maxOut);
    // Dictionary as (prefix code, last byte, length) with a first-byte cache.
    constexpr int MAXCODE = 4096;
    std::vector<int> prefix(MAXCODE), length(MAXCODE);
    std::vector<GByte> suffix(MAXCODE), first(MAXCODE);
    for (int i = 0; i < 256; ++i)
    {
        prefix[i] = -1;
        suffix[i] = static_cast<GByte>(i);
        first[i] = static_cast<GByte>(i);
        length[i] = 1;
    }
    int nextCode = 258;
    int codeLen = 9;
    int prev = -1;
    uint64_t bitBuf = 0;
    int bitCount = 0;
    size_t pos = 0;
    std::vector<GByte> tmp;
    tmp.reserve(MAXCODE);
    if (n >= 2 && in[0] == 0 && (in[1] & 0x1) != 0)
    {
        CPLError(CE_Failure, CPLE_NotSupported,
                 "old-style (LSB-first) TIFF LZW is not supported");
        return false;
    }
    while (true)
    {
        while (bitCount < codeLen)
        {
            if (pos >= n)
                return true;  // ran out of input without EOI: keep output
            bitBuf = (bitBuf << 8) | in[pos++];
            bitCount += 8;
        }
        const int code =
            static_cast<int>((bitBuf >> (bitCount - codeLen)) &
                             ((1U << codeLen) - 1));
        bitCount -= codeLen;
        if (code == 257)  // EOI
            return true;
        if (code == 256)  // Clear
        {
            nextCode = 258;
            codeLen = 9;
            prev = -1;
            continue;
        }
        int emit = code;
        GByte firstByte;
        if (code < nextCode && (code < 256 || code >= 258))
        {
            firstByte = first[code];
        }
        else if (code == nextCode && prev >= 0)
        {
            firstByte = first[prev];
        }
        else
        {
            return false;
        }
        if (prev >= 0 && nextCode < MAXCODE)
        {
            prefix[nextCode] = prev;
            suffix[nextCode] = firstByte;
            first[nextCode] = first[prev];
            length[nextCode] = length[prev] + 1;
            ++nextCode;
        }
        // Emit the string of `emit`.
        const int len = length[emit];
        const size_t start = out.size();
        if (start + len > maxOut)
        {
            // Longer than a chunk: keep what fits, like libtiff.
            tmp.resize(len);
            int c = emit;
            for (int k = len - 1; k >= 0; --k)
            {
                tmp[k] = suffix[c];
                c = prefix[c];
            }
            out.insert(out.end(), tmp.begin(),
                       tmp.begin() + static_cast<std::ptrdiff_t>(maxOut - start));
            return true;
        }
        out.resize(start + len);
        int c = emit;
        for (int k = len - 1; k >= 0; --k)
        {
            out[start + k] = suffix[c];
            c = prefix[c];
        }
        prev = code;
        // Early change: the code length grows one code before the table
        // would overflow it.
        if (nextCode + 1 >= (1 << codeLen) && codeLen < 12)
            ++codeLen;
    }
}

bool DecodePackBits(const GByte *in, size_t n, std::vector<GByte> &out,
                    size_t maxOut)
{
    out.clear();
    out.reserve(maxOut);
    size_t i = 0;
    while (i < n && out.size() < maxOut)
    {
        const int h = static_cast<signed char>(in[i++]);
        if (h >= 0)
        {
            const size_t cnt = static_cast<size_t>(h) + 1;
            if (i + cnt > n)
                return false;
            out.insert(out.end(), in + i, in + i + cnt);
            i += cnt;
        }
        else if (h != -128)
        {
            if (i >= n)
                return false;
            out.insert(out.end(), static_cast<size_t>(1 - h), in[i++]);
        }
    }
    if (out.size() > maxOut)
        out.resize(maxOut);
    return true;
}

uint32_t Fletcher32(const GByte *data, size_t len)
{
    uint32_t sum1 = 0, sum2 = 0;
    size_t words = len / 2;
    while (words)
    {
        size_t t = words > 360 ? 360 : words;
        words -= t;
        do
        {
            sum1 += (static_cast<uint32_t>(data[0]) << 8) | data[1];
            data += 2;
            sum2 += sum1;
        } while (--t);
        sum1 = (sum1 & 0xffff) + (sum1 >> 16);
        sum2 = (sum2 & 0xffff) + (sum2 >> 16);
    }
    if (len % 2)
    {
        sum1 += static_cast<uint32_t>(*data) << 8;
        sum2 += sum1;
        sum1 = (sum1 & 0xffff) + (sum1 >> 16);
        sum2 = (sum2 & 0xffff) + (sum2 >> 16);
    }
    sum1 = (sum1 & 0xffff) + (sum1 >> 16);
    sum2 = (sum2 & 0xffff) + (sum2 >> 16);
    return (sum2 << 16) | sum1;
}

void Unshuffle(const std::vector<GByte> &in, std::vector<GByte> &out, int es)
{
    out.resize(in.size());
    const size_t nElem = in.size() / es;
    for (int b = 0; b < es; ++b)
        for (size_t i = 0; i < nElem; ++i)
            out[i * es + b] = in[b * nElem + i];
    // Trailing bytes that do not fill an element are left as they are.
    std::memcpy(out.data() + nElem * es, in.data() + nElem * es,
                in.size() - nElem * es);
}

void SwapWords(GByte *p, size_t nBytes, int wordSize)
{
    if (wordSize <= 1)
        return;
    GDALSwapWordsEx(p, wordSize, nBytes / wordSize, wordSize);
}

template <class T> void UndoPredictor2(GByte *row, size_t nElems, int samples)
{
    T *v = reinterpret_cast<T *>(row);
    for (size_t k = static_cast<size_t>(samples); k < nElems; ++k)
        v[k] = static_cast<T>(v[k] + v[k - samples]);
}

/** Number of elements in one predictor row (samples × chunk width). */
size_t RowElements(const Array &a, const Level &l, int samples)
{
    const int n = static_cast<int>(l.chunk.size());
    const int xDim = (a.bandDim == n - 1 && n >= 2) ? n - 2 : n - 1;
    return static_cast<size_t>(l.chunk[xDim]) * std::max(samples, 1);
}

std::atomic<int> g_nVSIMemCounter{0};

bool DecodeImage(const Array &a, const Level &l, const CodecStep &step,
                 const std::vector<GByte> &in, std::vector<GByte> &out,
                 const std::string &what)
{
    GDALDriverH hDrv = nullptr;
    std::vector<const char *> allowed;
    for (const char *name : ImageDrivers(step.name))
    {
        if (GDALGetDriverByName(name))
        {
            allowed.push_back(name);
            hDrv = GDALGetDriverByName(name);
        }
    }
    if (!hDrv)
    {
        CPLError(CE_Failure, CPLE_NotSupported,
                 "CRI: %s: codec '%s' needs GDAL's %s driver, which this "
                 "GDAL does not have",
                 what.c_str(), step.name.c_str(), ImageDrivers(step.name)[0]);
        return false;
    }
    allowed.push_back(nullptr);
    std::vector<GByte> data;
    if (step.name == "jpeg")
    {
        // Abbreviated TIFF JPEG tiles: tables (SOI..EOI) + tile (SOI..EOI)
        // spliced into one interchange stream. An Adobe APP14 marker says
        // how to interpret 3 components (transform 1 = YCbCr, 0 = RGB), as
        // libtiff tells libjpeg from the TIFF Photometric tag.
        const std::string &tablesB64 = step.tablesB64;
        std::vector<GByte> tables;
        if (!tablesB64.empty())
        {
            std::string s = tablesB64;
            const int nLen = CPLBase64DecodeInPlace(
                reinterpret_cast<GByte *>(&s[0]));
            tables.assign(s.begin(), s.begin() + nLen);
        }
        if (in.size() < 4 || in[0] != 0xFF || in[1] != 0xD8)
        {
            CPLError(CE_Failure, CPLE_AppDefined,
                     "CRI: %s: JPEG chunk does not start with SOI (corrupt)",
                     what.c_str());
            return false;
        }
        data.insert(data.end(), {0xFF, 0xD8});
        const std::string &cs = step.colorspace;
        if (cs == "YCbCr" || cs == "RGB")
        {
            const GByte transform = cs == "YCbCr" ? 1 : 0;
            const GByte app14[] = {0xFF, 0xEE, 0x00, 0x0E, 'A', 'd', 'o', 'b',
                                   'e',  0x00, 0x64, 0x00, 0x00, 0x00, 0x00,
                                   transform};
            data.insert(data.end(), app14, app14 + sizeof(app14));
        }
        if (tables.size() >= 4 && tables[0] == 0xFF && tables[1] == 0xD8)
        {
            size_t end = tables.size();
            if (tables[end - 2] == 0xFF && tables[end - 1] == 0xD9)
                end -= 2;
            data.insert(data.end(), tables.begin() + 2,
                        tables.begin() + static_cast<std::ptrdiff_t>(end));
        }
        data.insert(data.end(), in.begin() + 2, in.end());
    }
    else
    {
        data = in;
    }
    const std::string osMem = CPLSPrintf(
        "/vsimem/cri_%p_%d.%s", static_cast<const void *>(&a),
        g_nVSIMemCounter.fetch_add(1), step.name.c_str());
    VSILFILE *fp = VSIFileFromMemBuffer(osMem.c_str(), data.data(),
                                        data.size(), FALSE);
    if (!fp)
        return false;
    VSIFCloseL(fp);
    bool ok = false;
    {
        CPLErrorStateBackuper oBackuper(CPLQuietErrorHandler);
        GDALDatasetH hDS =
            GDALOpenEx(osMem.c_str(), GDAL_OF_RASTER | GDAL_OF_INTERNAL,
                       allowed.data(), nullptr, nullptr);
        if (hDS)
        {
            const int w = GDALGetRasterXSize(hDS);
            const int h = GDALGetRasterYSize(hDS);
            const int nb = GDALGetRasterCount(hDS);
            // The image holds h rows of w pixels x nb samples; chunky layout
            // puts samples innermost, as the chunk's C order does.
            const int nd = static_cast<int>(l.chunk.size());
            const bool chunky = a.bandDim == nd - 1 && nd >= 2;
            const uint64_t wantW = l.chunk[chunky ? nd - 2 : nd - 1];
            const uint64_t wantBands = chunky ? l.chunk[nd - 1] : 1;
            const size_t nBytes = static_cast<size_t>(w) * h * nb * a.itemSize;
            const size_t full = [&]
            {
                size_t s = a.itemSize;
                for (auto c : l.chunk)
                    s *= static_cast<size_t>(c);
                return s;
            }();
            const bool widthOK = static_cast<uint64_t>(w) == wantW &&
                                 static_cast<uint64_t>(nb) == wantBands;
            if (nb > 0 && nBytes <= full && widthOK)
            {
                out.resize(nBytes);
                ok = GDALDatasetRasterIO(
                         hDS, GF_Read, 0, 0, w, h, out.data(), w, h, a.eDT, nb,
                         nullptr, static_cast<GSpacing>(nb) * a.itemSize,
                         static_cast<GSpacing>(nb) * a.itemSize * w,
                         a.itemSize) == CE_None;
            }
            GDALClose(hDS);
        }
    }
    VSIUnlink(osMem.c_str());
    if (!ok)
    {
        CPLError(CE_Failure, CPLE_AppDefined,
                 "CRI: %s: %s chunk could not be decoded by GDAL's %s driver "
                 "(corrupt, or its size does not match the chunk shape)",
                 what.c_str(), step.name.c_str(), GDALGetDriverShortName(hDrv));
    }
    return ok;
}

}  // namespace

std::string UnsupportedCodec(const Level &level)
{
    for (const auto &s : level.codec)
    {
        if (const char *id = DecompressorId(s.name))
        {
            if (!CPLGetDecompressor(id))
                return s.name + " (this GDAL has no " + id + " decompressor)";
            if (s.name == "lz4")
            {
                const std::string &f = s.framing;
                if (f != "numcodecs" && f != "hdf5")
                    return "lz4 with framing '" + f + "'";
            }
            continue;
        }
        if (s.name == "lzw" || s.name == "packbits" || s.name == "shuffle" ||
            s.name == "fletcher32")
            continue;
        if (s.name == "unpack_bits")
        {
            if (s.bits != 1 && s.bits != 2 && s.bits != 4)
                return CPLSPrintf("unpack_bits with %d bits", s.bits);
            continue;
        }
#ifdef CRI_HAVE_LERC
        if (s.name == "lerc")
            continue;
#endif
        if (s.name == "tiff_predictor")
        {
            const int p = s.predictor;
            if (p != 1 && p != 2 && p != 3)
                return CPLSPrintf("tiff_predictor %d", p);
            continue;
        }
        if (IsImageStep(s.name))
        {
            bool have = false;
            for (const char *d : ImageDrivers(s.name))
                have = have || GDALGetDriverByName(d) != nullptr;
            if (!have && s.name == "lerc")
                return "lerc (this CRI driver was built without liblerc, "
                       "and this GDAL has no MRF driver: install liblerc-dev "
                       "and rebuild it with tools/build_driver.sh)";
            if (!have)
                return s.name + " (needs GDAL's " + ImageDrivers(s.name)[0] +
                       " driver, absent from this GDAL)";
            continue;
        }
        return s.name.empty() ? std::string("(unnamed step)") : s.name;
    }
    return std::string();
}

bool DecodeChunk(const Array &a, const Level &l, const GByte *inData,
                 size_t inSize, std::vector<GByte> &out,
                 const std::string &what, uint32_t skipMask)
{
    size_t full = static_cast<size_t>(a.itemSize);
    for (auto c : l.chunk)
        full *= static_cast<size_t>(c);

    std::vector<GByte> cur(inData, inData + inSize);
    std::vector<GByte> tmp;
    // Byte order of `cur`'s samples: as dtype says, native, or big-endian
    // (predictor 3 output).
    enum class Order
    {
        DType,
        Native,
        Big
    } order = Order::DType;
    const int wordSize =
        GDALDataTypeIsComplex(a.eDT) ? a.itemSize / 2 : a.itemSize;

    for (size_t iStep = 0; iStep < l.codec.size(); ++iStep)
    {
        const CodecStep &s = l.codec[iStep];
        if (iStep < 32 && (skipMask >> iStep) & 1)
            continue;
        // Bytes this step may produce: the chunk, plus the checksums that
        // later fletcher32 steps strip.
        size_t cap = full;
        for (size_t k = iStep + 1; k < l.codec.size(); ++k)
            if (l.codec[k].name == "fletcher32" &&
                !(k < 32 && (skipMask >> k) & 1))
                cap += 4;
        // A LERC or image blob after a decompressor may be larger than the
        // chunk it decodes to (small or incompressible tiles): not capped.
        bool blobNext = false;
        for (size_t k = iStep + 1; k < l.codec.size(); ++k)
            blobNext = blobNext || l.codec[k].name == "lerc" ||
                       IsImageStep(l.codec[k].name);
        if (const char *id = DecompressorId(s.name))
        {
            const CPLCompressor *dec = CPLGetDecompressor(id);
            if (!dec)
            {
                CPLError(CE_Failure, CPLE_NotSupported,
                         "CRI: %s: codec '%s' is not available in this GDAL",
                         what.c_str(), s.name.c_str());
                return false;
            }
            if (s.name == "lz4" &&
                s.framing == "hdf5")
            {
                // HDF5 LZ4 filter: 8-byte BE total size, 4-byte BE block
                // size, then per block a 4-byte BE compressed size and data
                // (stored raw when it equals the block's size).
                if (cur.size() < 12)
                    goto corrupt;
                uint64_t total = 0;
                for (int k = 0; k < 8; ++k)
                    total = (total << 8) | cur[k];
                uint32_t blockSize = 0;
                for (int k = 8; k < 12; ++k)
                    blockSize = (blockSize << 8) | cur[k];
                if (total > cap || blockSize == 0)
                    goto corrupt;
                tmp.resize(static_cast<size_t>(total));
                size_t p = 12, o = 0;
                while (o < total)
                {
                    if (p + 4 > cur.size())
                        goto corrupt;
                    uint32_t cs = 0;
                    for (int k = 0; k < 4; ++k)
                        cs = (cs << 8) | cur[p + k];
                    p += 4;
                    const size_t bs =
                        std::min<size_t>(blockSize, static_cast<size_t>(total - o));
                    if (p + cs > cur.size())
                        goto corrupt;
                    if (cs == bs)
                        std::memcpy(tmp.data() + o, cur.data() + p, bs);
                    else
                    {
                        void *pOut = tmp.data() + o;
                        size_t outSize = bs;
                        const char *const opts[] = {"HEADER=NO", nullptr};
                        if (!dec->pfnFunc(cur.data() + p, cs, &pOut, &outSize,
                                          opts, dec->user_data) ||
                            outSize != bs)
                            goto corrupt;
                    }
                    p += cs;
                    o += bs;
                }
                cur.swap(tmp);
                continue;
            }
            tmp.resize(cap);
            void *pOut = tmp.data();
            size_t outSize = cap;
            bool ok;
            {
                CPLErrorStateBackuper oBackuper(CPLQuietErrorHandler);
                ok = dec->pfnFunc(cur.data(), cur.size(), &pOut, &outSize,
                                  nullptr, dec->user_data);
                if (!ok)
                {
                    // More bytes than a chunk (some TIFF writers pad
                    // strips)? Decode fully and keep the chunk's bytes.
                    void *pAlloc = nullptr;
                    size_t allocSize = 0;
                    if (dec->pfnFunc(cur.data(), cur.size(), &pAlloc,
                                     &allocSize, nullptr, dec->user_data) &&
                        pAlloc)
                    {
                        const size_t keep =
                            blobNext ? allocSize : std::min(allocSize, cap);
                        tmp.resize(std::max(tmp.size(), keep));
                        std::memcpy(tmp.data(), pAlloc, keep);
                        outSize = keep;
                        ok = true;
                    }
                    VSIFree(pAlloc);
                }
            }
            if (!ok)
            {
                CPLError(CE_Failure, CPLE_AppDefined,
                         "CRI: %s: %s decompression failed (corrupt chunk)",
                         what.c_str(), s.name.c_str());
                return false;
            }
            tmp.resize(outSize);
            cur.swap(tmp);
        }
        else if (s.name == "lzw")
        {
            bool ok;
            {
                CPLErrorStateBackuper oBackuper(CPLQuietErrorHandler);
                ok = DecodeLZW(cur.data(), cur.size(), tmp, cap);
            }
            if (!ok)
            {
                CPLError(CE_Failure, CPLE_AppDefined,
                         "CRI: %s: LZW decoding failed (corrupt chunk, or "
                         "old-style LZW)",
                         what.c_str());
                return false;
            }
            cur.swap(tmp);
        }
        else if (s.name == "packbits")
        {
            if (!DecodePackBits(cur.data(), cur.size(), tmp, cap))
            {
                CPLError(CE_Failure, CPLE_AppDefined,
                         "CRI: %s: PackBits decoding failed (corrupt chunk)",
                         what.c_str());
                return false;
            }
            cur.swap(tmp);
        }
        else if (s.name == "shuffle")
        {
            const int es = s.elementSize > 0 ? s.elementSize : a.itemSize;
            if (es <= 0)
                goto corrupt;
            if (es > 1)
            {
                Unshuffle(cur, tmp, es);
                cur.swap(tmp);
            }
        }
        else if (s.name == "fletcher32")
        {
            if (cur.size() < 4)
                goto corrupt;
            const size_t n = cur.size() - 4;
            const uint32_t sum = Fletcher32(cur.data(), n);
            const uint32_t stored = static_cast<uint32_t>(cur[n]) |
                                    (static_cast<uint32_t>(cur[n + 1]) << 8) |
                                    (static_cast<uint32_t>(cur[n + 2]) << 16) |
                                    (static_cast<uint32_t>(cur[n + 3]) << 24);
            // HDF5 1.6 wrote the checksum byte-swapped; HDF5 accepts both.
            const uint32_t swapped = CPL_SWAP32(stored);
            if (sum != stored && sum != swapped)
            {
                CPLError(CE_Failure, CPLE_AppDefined,
                         "CRI: %s: Fletcher-32 checksum mismatch (corrupt "
                         "chunk)",
                         what.c_str());
                return false;
            }
            cur.resize(n);
        }
        else if (s.name == "tiff_predictor")
        {
            const int pred = s.predictor;
            const int samples = s.samples;
            const size_t rowElems = RowElements(a, l, samples);
            if (pred == 1)
                continue;
            if (pred == 2)
            {
                if (order == Order::DType && a.swap)
                    SwapWords(cur.data(), cur.size(), wordSize);
                order = Order::Native;
                const size_t rowBytes = rowElems * wordSize *
                                        (GDALDataTypeIsComplex(a.eDT) ? 2 : 1);
                const size_t nRows = cur.size() / rowBytes;
                const size_t nElemsRow = rowBytes / wordSize;
                for (size_t r = 0; r < nRows; ++r)
                {
                    GByte *row = cur.data() + r * rowBytes;
                    switch (wordSize)
                    {
                        case 1:
                            UndoPredictor2<uint8_t>(row, nElemsRow, samples);
                            break;
                        case 2:
                            UndoPredictor2<uint16_t>(row, nElemsRow, samples);
                            break;
                        case 4:
                            UndoPredictor2<uint32_t>(row, nElemsRow, samples);
                            break;
                        case 8:
                            UndoPredictor2<uint64_t>(row, nElemsRow, samples);
                            break;
                        default:
                            goto corrupt;
                    }
                }
            }
            else if (pred == 3)
            {
                const int nb = a.itemSize;
                const size_t rowBytes = rowElems * nb;
                const size_t nRows = cur.size() / rowBytes;
                tmp.resize(cur.size());
                for (size_t r = 0; r < nRows; ++r)
                {
                    GByte *row = cur.data() + r * rowBytes;
                    for (size_t k = static_cast<size_t>(samples); k < rowBytes;
                         ++k)
                        row[k] = static_cast<GByte>(row[k] + row[k - samples]);
                    GByte *dst = tmp.data() + r * rowBytes;
                    for (size_t k = 0; k < rowElems; ++k)
                        for (int p = 0; p < nb; ++p)
                            dst[k * nb + p] = row[p * rowElems + k];
                }
                cur.swap(tmp);
                order = Order::Big;
            }
            else
            {
                CPLError(CE_Failure, CPLE_NotSupported,
                         "CRI: %s: tiff_predictor %d is not supported",
                         what.c_str(), pred);
                return false;
            }
        }
        else if (s.name == "unpack_bits")
        {
            const size_t rowElems = RowElements(a, l, l.chunk.size() >= 2 &&
                a.bandDim == static_cast<int>(l.chunk.size()) - 1
                    ? static_cast<int>(l.chunk.back()) : 1);
            if (!UnpackBits(cur, s.bits, rowElems, tmp))
                goto corrupt;
            cur.swap(tmp);
        }
#ifdef CRI_HAVE_LERC
        else if (s.name == "lerc")
        {
            if (!DecodeLerc(a, cur, cap, tmp, what))
                return false;
            cur.swap(tmp);
            order = Order::DType;
        }
#endif
        else if (IsImageStep(s.name))
        {
            if (!DecodeImage(a, l, s, cur, tmp, what))
                return false;
            cur.swap(tmp);
            order = Order::Native;  // GDAL returns native samples
        }
        else
        {
            CPLError(CE_Failure, CPLE_NotSupported,
                     "CRI: %s: unknown codec step '%s'", what.c_str(),
                     s.name.c_str());
            return false;
        }
    }

    if (cur.size() > full)
        cur.resize(full);  // e.g. uncompressed strips stored longer
    if (order == Order::DType && a.swap)
        SwapWords(cur.data(), cur.size(), wordSize);
#if CPL_IS_LSB
    if (order == Order::Big)
        SwapWords(cur.data(), cur.size(), wordSize);
#endif
    out.swap(cur);
    return true;

corrupt:
    CPLError(CE_Failure, CPLE_AppDefined, "CRI: %s: corrupt chunk", what.c_str());
    return false;
}

}  // namespace cri
