package fill

// The tests fill blobs of a few MiB over several connections, in pieces of
// 1 MiB.
func init() {
	segmentMin, maxPiece = 2<<20, 1<<20
}
