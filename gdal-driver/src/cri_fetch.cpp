// Fetching chunk bytes: one request's ranges grouped by file, adjacent (or
// nearly adjacent, for network files) ranges merged, each file read with one
// VSIFReadMultiRangeL call (parallel HTTP range requests on /vsicurl/ and
// /vsis3/), files read concurrently.
#include "cri.h"

#include "cpl_vsi.h"

#include <algorithm>
#include <atomic>
#include <thread>

namespace cri
{

namespace
{

bool IsNetworkPath(const std::string &p)
{
    return STARTS_WITH(p.c_str(), "/vsicurl") || STARTS_WITH(p.c_str(), "/vsis3") ||
           STARTS_WITH(p.c_str(), "/vsigs") || STARTS_WITH(p.c_str(), "/vsiaz") ||
           STARTS_WITH(p.c_str(), "/vsiadls") || STARTS_WITH(p.c_str(), "/vsioss") ||
           STARTS_WITH(p.c_str(), "/vsiswift") || STARTS_WITH(p.c_str(), "/vsiwebhdfs");
}

bool FetchFile(const std::string &path, std::vector<RangeRequest *> &reqs)
{
    std::sort(reqs.begin(), reqs.end(),
              [](const RangeRequest *a, const RangeRequest *b)
              { return a->offset < b->offset; });
    // Gap below which two ranges are read as one: reading a few unneeded
    // bytes is cheaper than another HTTP request.
    const int64_t maxGap = CPLAtoGIntBig(CPLGetConfigOption(
        "CRI_MERGE_GAP", IsNetworkPath(path) ? "65536" : "0"));
    struct Group
    {
        int64_t start, end;
        size_t first, last;  // reqs[first..last)
    };
    std::vector<Group> groups;
    for (size_t i = 0; i < reqs.size(); ++i)
    {
        const int64_t s = reqs[i]->offset;
        const int64_t e = s + reqs[i]->length;
        if (!groups.empty() && s <= groups.back().end + maxGap)
        {
            groups.back().end = std::max(groups.back().end, e);
            groups.back().last = i + 1;
        }
        else
            groups.push_back({s, e, i, i + 1});
    }

    VSILFILE *fp = VSIFOpenL(path.c_str(), "rb");
    if (!fp)
    {
        CPLError(CE_Failure, CPLE_OpenFailed,
                 "CRI: cannot open source file %s (needed by %s)", path.c_str(),
                 reqs.front()->what.c_str());
        return false;
    }
    std::vector<std::vector<GByte>> buffers(groups.size());
    std::vector<void *> ptrs(groups.size());
    std::vector<vsi_l_offset> offsets(groups.size());
    std::vector<size_t> sizes(groups.size());
    for (size_t g = 0; g < groups.size(); ++g)
    {
        const size_t n = static_cast<size_t>(groups[g].end - groups[g].start);
        buffers[g].resize(n);
        ptrs[g] = buffers[g].data();
        offsets[g] = static_cast<vsi_l_offset>(groups[g].start);
        sizes[g] = n;
    }
    int ret = VSIFReadMultiRangeL(static_cast<int>(groups.size()), ptrs.data(),
                                  offsets.data(), sizes.data(), fp);
    bool ok = ret == 0;
    if (!ok)
    {
        // Name the first chunk that falls past the end of the file.
        VSIFSeekL(fp, 0, SEEK_END);
        const vsi_l_offset nSize = VSIFTellL(fp);
        std::string what = reqs.front()->what;
        for (auto *r : reqs)
        {
            if (static_cast<vsi_l_offset>(r->offset + r->length) > nSize)
            {
                what = r->what;
                break;
            }
        }
        CPLError(CE_Failure, CPLE_FileIO,
                 "CRI: short read in %s (file is " CPL_FRMT_GUIB
                 " bytes) for %s",
                 path.c_str(), static_cast<GUIntBig>(nSize), what.c_str());
    }
    VSIFCloseL(fp);
    if (!ok)
        return false;
    for (const auto &g : groups)
    {
        const std::vector<GByte> &buf = buffers[&g - groups.data()];
        for (size_t i = g.first; i < g.last; ++i)
        {
            RangeRequest *r = reqs[i];
            const size_t off = static_cast<size_t>(r->offset - g.start);
            r->dest->assign(buf.begin() + off,
                            buf.begin() + off + static_cast<size_t>(r->length));
        }
    }
    return true;
}

}  // namespace

bool FetchRanges(std::vector<RangeRequest> &requests)
{
    std::map<std::string, std::vector<RangeRequest *>> byFile;
    for (auto &r : requests)
    {
        if (r.length < 0 || r.offset < 0)
        {
            CPLError(CE_Failure, CPLE_AppDefined,
                     "CRI: %s: negative offset or length in the index",
                     r.what.c_str());
            return false;
        }
        if (r.length == 0)
        {
            r.dest->clear();
            continue;
        }
        byFile[r.path].push_back(&r);
    }
    if (byFile.empty())
        return true;
    std::vector<std::pair<const std::string *, std::vector<RangeRequest *> *>>
        files;
    for (auto &kv : byFile)
        files.emplace_back(&kv.first, &kv.second);
    const int nThreads = std::min<int>(
        static_cast<int>(files.size()),
        std::max(1, atoi(CPLGetConfigOption("CRI_NUM_THREADS", "8"))));
    if (nThreads <= 1)
    {
        for (auto &f : files)
            if (!FetchFile(*f.first, *f.second))
                return false;
        return true;
    }
    // Errors raised in worker threads are collected and re-emitted here, so
    // the caller's error handler sees them.
    std::atomic<size_t> next{0};
    std::atomic<bool> failed{false};
    std::mutex errMutex;
    std::vector<std::pair<CPLErrorNum, std::string>> errors;
    struct Collected
    {
        std::vector<std::pair<CPLErrorNum, std::string>> errors{};
    };
    auto worker = [&]()
    {
        Collected col;
        CPLPushErrorHandlerEx(
            [](CPLErr eErr, CPLErrorNum no, const char *msg)
            {
                auto *c = static_cast<Collected *>(CPLGetErrorHandlerUserData());
                if (eErr >= CE_Failure)
                    c->errors.emplace_back(no, msg);
            },
            &col);
        while (!failed)
        {
            const size_t i = next.fetch_add(1);
            if (i >= files.size())
                break;
            if (!FetchFile(*files[i].first, *files[i].second))
                failed = true;
        }
        CPLPopErrorHandler();
        std::lock_guard<std::mutex> lock(errMutex);
        errors.insert(errors.end(), col.errors.begin(), col.errors.end());
    };
    std::vector<std::thread> threads;
    for (int t = 0; t < nThreads; ++t)
        threads.emplace_back(worker);
    for (auto &t : threads)
        t.join();
    if (!errors.empty())
        CPLError(CE_Failure, errors.front().first, "%s",
                 errors.front().second.c_str());
    return !failed;
}

}  // namespace cri
