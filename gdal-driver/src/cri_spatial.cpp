// The BBOX open option: a spatial filter over the index's chunk footprints
// (spec §1.4a: `geometry` WKB in WGS84 lon/lat, `bbox` covering column).
//
// The box becomes a WGS84 (Multi)Polygon exactly as `chunkindex query`
// builds it (chunkindex/geo/query.py: query_geometry): a lon/lat box as is,
// split in two when minx > maxx (across the antimeridian); a box in another
// CRS densified to 65 points an edge, transformed, its longitudes unwrapped
// and the ring folded back into [-180, 180]. Rows are then tested as that
// query tests them: the `bbox` column against each part's envelope, then the
// WKB footprint exactly (GEOS), so the driver reads the chunks the query
// lists.
#include "cri.h"

#include "ogr_api.h"
#include "ogr_spatialref.h"

#include <cmath>

namespace cri
{

namespace
{

constexpr int EDGE_POINTS = 65;  // as query_geometry: np.linspace(0, 1, 65)

std::unique_ptr<OGRPolygon> Box(double minx, double miny, double maxx,
                                double maxy)
{
    auto ring = std::make_unique<OGRLinearRing>();
    ring->addPoint(minx, miny);
    ring->addPoint(maxx, miny);
    ring->addPoint(maxx, maxy);
    ring->addPoint(minx, maxy);
    ring->addPoint(minx, miny);
    auto poly = std::make_unique<OGRPolygon>();
    poly->addRingDirectly(ring.release());
    return poly;
}

/** The densified box in `srs` as a WGS84 geometry within [-180, 180]. */
std::unique_ptr<OGRGeometry> Reproject(const double b[4],
                                       const OGRSpatialReference &srs,
                                       std::string &error)
{
    OGRSpatialReference wgs84;
    wgs84.SetWellKnownGeogCS("WGS84");
    wgs84.SetAxisMappingStrategy(OAMS_TRADITIONAL_GIS_ORDER);
    std::unique_ptr<OGRCoordinateTransformation> ct(
        OGRCreateCoordinateTransformation(&srs, &wgs84));
    if (!ct)
    {
        error = "no transformation from the BBOX_CRS to WGS84";
        return nullptr;
    }
    std::vector<double> xs, ys;
    for (int edge = 0; edge < 4; ++edge)
    {
        for (int i = 0; i < EDGE_POINTS; ++i)
        {
            const double t = static_cast<double>(i) / (EDGE_POINTS - 1);
            switch (edge)
            {
                case 0:
                    xs.push_back(b[0] + (b[2] - b[0]) * t);
                    ys.push_back(b[1]);
                    break;
                case 1:
                    xs.push_back(b[2]);
                    ys.push_back(b[1] + (b[3] - b[1]) * t);
                    break;
                case 2:
                    xs.push_back(b[2] - (b[2] - b[0]) * t);
                    ys.push_back(b[3]);
                    break;
                default:
                    xs.push_back(b[0]);
                    ys.push_back(b[3] - (b[3] - b[1]) * t);
                    break;
            }
        }
    }
    std::vector<int> ok(xs.size());
    if (!ct->Transform(xs.size(), xs.data(), ys.data(), nullptr, ok.data()))
    {
        error = "the box cannot be transformed to WGS84";
        return nullptr;
    }
    for (size_t i = 0; i < xs.size(); ++i)
    {
        if (!ok[i] || !std::isfinite(xs[i]) || !std::isfinite(ys[i]))
        {
            error = "the box cannot be transformed to WGS84";
            return nullptr;
        }
    }
    // Continuous longitudes across the antimeridian (numpy.unwrap).
    double shift = 0;
    for (size_t i = 1; i < xs.size(); ++i)
    {
        const double raw = xs[i] + shift;
        const double d = raw - xs[i - 1];
        if (std::fabs(d) > 180)
            shift -= 360 * std::round(d / 360);
        xs[i] += shift;
    }
    auto world = Box(-180, -90, 180, 90);
    std::unique_ptr<OGRGeometry> out;
    for (double s : {-360.0, 0.0, 360.0})
    {
        auto ring = std::make_unique<OGRLinearRing>();
        for (size_t i = 0; i < xs.size(); ++i)
            ring->addPoint(xs[i] + s, ys[i]);
        ring->closeRings();
        OGRPolygon poly;
        poly.addRingDirectly(ring.release());
        std::unique_ptr<OGRGeometry> part(poly.Intersection(world.get()));
        if (!part || part->IsEmpty())
            continue;
        if (!out)
            out = std::move(part);
        else
            out.reset(out->Union(part.get()));
    }
    if (!out)
        error = "the box does not meet [-180, 180] x [-90, 90] in WGS84";
    return out;
}

}  // namespace

SpatialFilter::~SpatialFilter()
{
    if (m_prepared)
        OGRDestroyPreparedGeometry(m_prepared);
}

std::unique_ptr<SpatialFilter> SpatialFilter::Build(const std::string &bbox,
                                                    const std::string &crs,
                                                    std::string &error)
{
    const CPLStringList toks(CSLTokenizeString2(bbox.c_str(), ", ", 0));
    double b[4];
    bool ok = toks.size() == 4;
    for (int i = 0; ok && i < 4; ++i)
    {
        char *end = nullptr;
        b[i] = CPLStrtod(toks[i], &end);
        ok = end && *end == '\0' && std::isfinite(b[i]);
    }
    if (!ok)
    {
        error = "BBOX=" + bbox + ": expected minx,miny,maxx,maxy";
        return nullptr;
    }
    if (b[1] > b[3])
    {
        error = "BBOX=" + bbox + ": miny > maxy";
        return nullptr;
    }
    OGRSpatialReference srs;
    srs.SetAxisMappingStrategy(OAMS_TRADITIONAL_GIS_ORDER);
    if (crs.empty())
        srs.SetWellKnownGeogCS("WGS84");
    else if (srs.SetFromUserInput(crs.c_str()) != OGRERR_NONE)
    {
        error = "BBOX_CRS=" + crs + " is not a CRS GDAL knows";
        return nullptr;
    }
    std::unique_ptr<SpatialFilter> f(new SpatialFilter());
    if (srs.IsGeographic())
    {
        // Lon/lat as given (as chunkindex query does): minx > maxx crosses
        // the antimeridian.
        if (b[0] > b[2])
        {
            auto mp = std::make_unique<OGRMultiPolygon>();
            mp->addGeometryDirectly(Box(b[0], b[1], 180, b[3]).release());
            mp->addGeometryDirectly(Box(-180, b[1], b[2], b[3]).release());
            f->m_geom = std::move(mp);
        }
        else
            f->m_geom = Box(b[0], b[1], b[2], b[3]);
    }
    else
    {
        if (b[0] > b[2])
        {
            error = "BBOX=" + bbox + ": minx > maxx";
            return nullptr;
        }
        f->m_geom = Reproject(b, srs, error);
        if (!f->m_geom)
        {
            error = "BBOX=" + bbox + " in " + crs + ": " + error;
            return nullptr;
        }
    }
    const OGRGeometry *g = f->m_geom.get();
    auto addEnvelope = [&f](const OGRGeometry *part)
    {
        OGREnvelope e;
        part->getEnvelope(&e);
        f->m_envelopes.push_back({e.MinX, e.MinY, e.MaxX, e.MaxY});
    };
    if (const auto *coll = dynamic_cast<const OGRGeometryCollection *>(g))
    {
        for (const auto *part : *coll)
            addEnvelope(part);
    }
    else
        addEnvelope(g);
    if (OGRHasPreparedGeometrySupport())
        f->m_prepared = OGRCreatePreparedGeometry(
            OGRGeometry::ToHandle(const_cast<OGRGeometry *>(g)));
    else
        CPLDebug("CRI", "GDAL has no GEOS: BBOX tests footprint envelopes only");
    f->m_description =
        "BBOX=" + bbox + (crs.empty() ? std::string() : " BBOX_CRS=" + crs);
    return f;
}

bool SpatialFilter::EnvelopeMeets(double xmin, double ymin, double xmax,
                                  double ymax) const
{
    for (const auto &e : m_envelopes)
        if (xmax >= e[0] && xmin <= e[2] && ymax >= e[1] && ymin <= e[3])
            return true;
    return false;
}

bool SpatialFilter::Meets(const GByte *wkb, size_t n) const
{
    OGRGeometry *raw = nullptr;
    if (OGRGeometryFactory::createFromWkb(wkb, nullptr, &raw, n) !=
            OGRERR_NONE ||
        !raw)
        return true;
    std::unique_ptr<OGRGeometry> geom(raw);
    OGREnvelope e;
    geom->getEnvelope(&e);
    if (!EnvelopeMeets(e.MinX, e.MinY, e.MaxX, e.MaxY))
        return false;
    if (!m_prepared)
        return true;
    return OGRPreparedGeometryIntersects(m_prepared,
                                         OGRGeometry::ToHandle(geom.get())) != 0;
}

}  // namespace cri
