package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strconv"
	"time"

	"github.com/regcache/regcache/internal/cache"
	"github.com/regcache/regcache/internal/httpguard"
	"github.com/regcache/regcache/internal/oci"
)

// The admin listener's cache API, which `regcache cache --admin` calls:
//
//	GET  /cache/ls?upstream=&repository=&sort=&blobs=1&missing=1   Listing (names repositories: loopback or token)
//	GET  /cache/stats                                     CacheStats
//	POST /cache/rm      RemoveRequest                     RemoveResult
//	POST /cache/invalidate InvalidateRequest              InvalidateResult
//	GET  /cache/export?ref=alpine:3.20&ref=...            a bundle (OCI image layout tar); every tag without ref
//	POST /cache/import  a bundle (Content-Type: application/x-tar)   BundleResult
//	POST /cache/prune   PruneRequest                      PruneResult
//	POST /cache/verify                                    VerifyEvent lines (NDJSON), then {"report": VerifyReport}
//
// (the wire types are internal/cache's).
//
// Calls that change the cache are POSTs, and are refused unless
// auth.mayChange (loopback, or the admin token when one is configured);
// the admin listener's httpguard.Guard takes them only as same-site
// requests with Content-Type: application/json.
// Errors are plain text with a status code.

// maxCacheRequest bounds the body of a cache API call.
const maxCacheRequest = 1 << 20

func (a *Admin) cacheRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /cache/ls", a.serveCacheList)
	mux.HandleFunc("GET /cache/stats", a.serveCacheStats)
	mux.HandleFunc("POST /cache/rm", a.serveCacheRemove)
	mux.HandleFunc("POST /cache/invalidate", a.serveCacheInvalidate)
	mux.HandleFunc("GET /cache/export", a.serveCacheExport)
	mux.HandleFunc("POST /cache/export", a.serveCacheExportRequest)
	mux.HandleFunc("POST /cache/import", a.serveCacheImport)
	mux.HandleFunc("POST /cache/prune", a.serveCachePrune)
	mux.HandleFunc("POST /cache/verify", a.serveCacheVerify)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// cacheError answers a failed cache call: a bad request (the caller's
// fault, its message names the fix) or an internal error.
func (a *Admin) cacheError(w http.ResponseWriter, err error, bad bool) {
	if bad {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	a.d.Log.Error("admin cache call", slog.Any("error", err))
	http.Error(w, "the cache call failed: "+err.Error(), http.StatusInternalServerError)
}

func (a *Admin) serveCacheList(w http.ResponseWriter, r *http.Request) {
	if !a.auth.maySeePrivate(r) {
		a.auth.refuse(w)
		return
	}
	q := r.URL.Query()
	blobs, _ := strconv.ParseBool(q.Get("blobs"))
	missing, _ := strconv.ParseBool(q.Get("missing"))
	opt := cache.ListOptions{Upstream: q.Get("upstream"), Repository: q.Get("repository"), Sort: q.Get("sort"), Blobs: blobs, Missing: missing}
	l, err := a.d.Ops.List(r.Context(), opt)
	if err != nil {
		a.cacheError(w, err, true)
		return
	}
	writeJSON(w, l)
}

// Stats answers `cache stats` on the running mirror.
func (a *Admin) Stats() cache.CacheStats {
	st, err := a.d.Ops.Stats(context.Background())
	if err != nil {
		a.d.Log.Warn("count the quarantine", slog.Any("error", err))
	}
	cfg := a.src.Config()
	if abs, err := filepath.Abs(cfg.Data); err == nil {
		st.Data = abs
	}
	scrub := a.d.Scrub.Status()
	st.Running, st.Scrub = true, &scrub
	st.MaxSize, st.MaxAge = a.src.MaxSize(), cfg.Storage.MaxAge
	return st
}

func (a *Admin) serveCacheStats(w http.ResponseWriter, r *http.Request) {
	st := a.Stats()
	if !a.auth.maySeePrivate(r) {
		st.Data, st.Quarantine = "", ""
	}
	writeJSON(w, st)
}

// decodeCacheRequest reads a bounded JSON body into v (strictly: see
// httpguard.DecodeJSON).
func decodeCacheRequest(r *http.Request, v any) error {
	if err := httpguard.DecodeJSON(r, v, maxCacheRequest); err != nil {
		return fmt.Errorf("the request body is not a cache call this mirror knows (%v): is regcache the same version on both sides?", err)
	}
	return nil
}

func (a *Admin) serveCacheRemove(w http.ResponseWriter, r *http.Request) {
	if !a.auth.mayChange(r) {
		a.auth.refuse(w)
		return
	}
	var req cache.RemoveRequest
	if err := decodeCacheRequest(r, &req); err != nil {
		a.cacheError(w, err, true)
		return
	}
	res, err := a.d.Ops.Remove(r.Context(), req)
	if err != nil {
		// A name that matches nothing (or too much) is the caller's to fix.
		a.cacheError(w, err, true)
		return
	}
	writeJSON(w, res)
}

func (a *Admin) serveCacheInvalidate(w http.ResponseWriter, r *http.Request) {
	if !a.auth.mayChange(r) {
		a.auth.refuse(w)
		return
	}
	var req cache.InvalidateRequest
	if err := decodeCacheRequest(r, &req); err != nil {
		a.cacheError(w, err, true)
		return
	}
	res, err := a.d.Ops.Invalidate(r.Context(), req)
	if err != nil {
		a.cacheError(w, err, true) // a name that matches nothing (or too much)
		return
	}
	writeJSON(w, res)
}

// serveCacheExport streams a bundle. It gives content and names, so it
// asks what changes do (loopback, or the admin token).
func (a *Admin) serveCacheExport(w http.ResponseWriter, r *http.Request) {
	if !a.auth.mayChange(r) {
		a.auth.refuse(w)
		return
	}
	var req cache.ExportRequest
	for _, s := range r.URL.Query()["ref"] {
		ref, err := oci.ParseImage(s)
		if err != nil {
			a.cacheError(w, err, true)
			return
		}
		req.Targets = append(req.Targets, cache.RemoveTarget{Raw: s, Registry: ref.Registry, Repo: ref.Repo, Tag: ref.Tag, Digest: ref.Digest})
	}
	a.streamExport(w, r, req)
}

// maxExportRequest bounds an export's request: a resumed export lists the
// files its bundle holds (about 75 bytes each).
const maxExportRequest = 32 << 20

// serveCacheExportRequest is `cache export` as a JSON request
// (cache.ExportRequest): a dry run answers the counts as JSON, else the
// bundle is streamed, resuming one cut short when asked.
func (a *Admin) serveCacheExportRequest(w http.ResponseWriter, r *http.Request) {
	if !a.auth.mayChange(r) {
		a.auth.refuse(w)
		return
	}
	var req cache.ExportRequest
	if err := httpguard.DecodeJSON(r, &req, maxExportRequest); err != nil {
		a.cacheError(w, fmt.Errorf("the request body is not a cache call this mirror knows (%v): is regcache the same version on both sides?", err), true)
		return
	}
	if req.DryRun {
		res, err := a.d.Ops.Export(r.Context(), io.Discard, req)
		if err != nil {
			a.cacheError(w, err, true)
			return
		}
		writeJSON(w, res)
		return
	}
	a.streamExport(w, r, req)
}

// streamExport answers a bundle as a tar stream.
func (a *Admin) streamExport(w http.ResponseWriter, r *http.Request, req cache.ExportRequest) {
	// The tags are checked before the first byte: a name that matches
	// nothing is a plain error, not a cut stream.
	if _, err := a.d.Ops.Export(r.Context(), io.Discard, cache.ExportRequest{Targets: req.Targets, DryRun: true}); err != nil {
		a.cacheError(w, err, true)
		return
	}
	w.Header().Set("Content-Type", "application/x-tar")
	if _, err := a.d.Ops.Export(r.Context(), w, req); err != nil {
		a.d.Log.Error("cache export cut short", slog.Any("error", err))
		panic(http.ErrAbortHandler) // the client sees a cut stream, not a good-looking tar
	}
}

// serveCacheImport loads a bundle streamed in the request body into the
// running mirror's store and index (cache.Ops.Import: every file checked
// against its digest, nothing left of a refused bundle). Eviction waits
// for it.
func (a *Admin) serveCacheImport(w http.ResponseWriter, r *http.Request) {
	if !a.auth.mayChange(r) {
		a.auth.refuse(w)
		return
	}
	if mt := r.Header.Get("Content-Type"); mt != "application/x-tar" {
		a.cacheError(w, fmt.Errorf("an import takes the bundle as Content-Type: application/x-tar, not %q", mt), true)
		return
	}
	res, err := a.d.Ops.Import(r.Context(), r.Body)
	if err != nil {
		a.cacheError(w, fmt.Errorf("bundle refused: %w", err), true)
		return
	}
	a.d.Log.Info("bundle imported", slog.Int("tags", len(res.Tags)), slog.Int("files", res.Files), slog.Int64("bytes", res.Bytes), slog.Int("skipped", res.Skipped))
	writeJSON(w, res)
}

func (a *Admin) serveCachePrune(w http.ResponseWriter, r *http.Request) {
	if !a.auth.mayChange(r) {
		a.auth.refuse(w)
		return
	}
	var req cache.PruneRequest
	if err := decodeCacheRequest(r, &req); err != nil {
		a.cacheError(w, err, true)
		return
	}
	if req.ToSize <= 0 && req.OlderThan <= 0 {
		a.cacheError(w, errors.New("say how far to prune: --to-size (e.g. 50GiB) and/or --older-than (e.g. 720h)"), true)
		return
	}
	res, err := a.d.Ops.Prune(r.Context(), req)
	if err != nil {
		a.cacheError(w, err, false)
		return
	}
	writeJSON(w, res)
}

// verifyProgressEvery is the least time between two progress lines of a
// verification (damage is sent at once).
const verifyProgressEvery = 200 * time.Millisecond

// verifyLine is one line of POST /cache/verify's answer.
type verifyLine struct {
	Event  *cache.VerifyEvent  `json:"event,omitempty"`
	Report *cache.VerifyReport `json:"report,omitempty"`
	Error  string              `json:"error,omitempty"`
}

func (a *Admin) serveCacheVerify(w http.ResponseWriter, r *http.Request) {
	if !a.auth.mayChange(r) {
		a.auth.refuse(w)
		return
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	enc := json.NewEncoder(w)
	flusher, _ := w.(http.Flusher)
	var last time.Time
	send := func(l verifyLine) {
		_ = enc.Encode(l)
		if flusher != nil {
			flusher.Flush()
		}
	}
	rep, err := a.d.Ops.Verify(r.Context(), func(ev cache.VerifyEvent) {
		if ev.Damaged == "" && ev.Done < ev.Total && time.Since(last) < verifyProgressEvery {
			return
		}
		last = time.Now()
		send(verifyLine{Event: &ev})
	})
	if err != nil {
		send(verifyLine{Error: err.Error()})
		return
	}
	send(verifyLine{Report: &rep})
}
