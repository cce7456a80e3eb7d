// Package reflate splits a raw deflate stream (RFC 1951) into the plain data it holds plus
// reconstruction data, and rebuilds the exact stream, bit for bit, from the two. It lets a
// delta or a deduplicating store see the plain data of gzip files, zip members, VMDK grains or
// qcow2 clusters whatever made them, and still give back the shipped compressed bytes.
//
// Split parses the stream into blocks (stored, fixed, dynamic), each dynamic block's header as
// written and its tokens (literals and length/distance matches). Most of that is predicted from
// the plain data, and only what the prediction misses is stored:
//
//   - Tokens are predicted by a model of zlib's deflate (deflate.c; GNU gzip, Info-ZIP zip,
//     busybox gzip and pigz share its design): hash chains with zlib's hash (memLevel 8),
//     longest_match with the level's good_length, nice_length and max_chain, deflate_fast below
//     level 4 and deflate_slow's lazy evaluation with the TOO_FAR rule from level 4, matches at
//     most MAX_DIST (32506) back. The level is detected: the one whose tokens differ least from
//     the stream's over its first 256 KiB. The model is steered: where the stream's token
//     differs it carries on from the stream's token, so a difference costs one correction.
//   - Restart points model producers that compress pieces independently (pigz's 128 KiB
//     pieces, each a new deflate stream primed with the previous 32 KiB): the model's data ends
//     at the next restart point and the hash chains start afresh from the last 32 KiB.
//   - Dynamic block headers are predicted with zlib's trees.c from the block's symbol counts
//     (build_tree's heap order, gen_bitlen's length limit, scan_tree's run-length coding,
//     the code length code and its trimmed count); a header that differs is stored whole.
//   - Block types, block sizes (in tokens; stored blocks in bytes), the padding bits before
//     stored blocks and after the final block are stored as they are: a few bytes per block.
//   - A stream that this build's compress/flate makes at some level from the plain data, in
//     one Write and Close, is stored as that level alone.
//
// Rebuild runs the same model over the plain data, applies the stored differences and writes
// the stream. At levels 4-9 the model's state at a block start is the strings of the preceding
// 32 KiB plus its lazy evaluation state, so Split records that state every 1 MiB (a segment)
// and Rebuild runs the segments on all cores. It never returns a wrong stream: the reconstruction data records the stream's
// length and CRC-32, and a rebuilt stream that does not match them is an error. Split checks
// itself the same way before it returns.
//
// Reconstruction data, version 1 (integers are unsigned LEB128 varints unless sized):
//
//	"RFL" 1            magic and format version
//	length             bytes of the deflate stream
//	crc32              4 bytes little-endian, CRC-32 (IEEE) of the deflate stream
//	plain length       bytes of plain data
//	method, level      1 byte each: method 0 = Go compress/flate at level-2, nothing follows;
//	                   method 1 = zlib model at level 1..9, then:
//	body length, body  a byte saying how the rest is coded (0 as is, 1 deflate by compress/flate)
//	                   and the body
//
// The body, decoded, is four sections, each a length and its bytes:
//
//	blocks       count, then per block a flags byte (bit 0 final, bits 1-2 type, bit 3 header
//	             stored whole, bit 4 stored block with non-zero padding) and the stored
//	             length (then the padding byte if flagged) or the token count; then the padding
//	             after the final block (1 byte); then the restart points (count, then each as
//	             the distance in plain bytes from the previous one)
//	headers      the dynamic headers that differ from the prediction, in block order: HLIT-257,
//	             HDIST-1, HCLEN-4 (1 byte each), HCLEN+4 code length code lengths (1 byte
//	             each), the number of code length symbols, then each symbol (1 byte) followed
//	             by its repeat bits (1 byte) for symbols 16, 17 and 18
//	corrections  count, then per difference: the number of tokens since the previous
//	             difference, the stream's match length (0 for a literal) and, for a match,
//	             rank+1, where rank counts the model's hash chain candidates at that position
//	             (nearest first, those matching at least that length, at most 4096 steps) before
//	             the match's; or 0 and the distance where the match is not in the chain
//	segments     count, then per segment: its first block's index and its plain position
//	             (each as the difference from the previous segment's), pendLen<<1|pendValid
//	             and pendDist: the lazy evaluation state the model had there
//
// Streams this package does not take (an error from Split): malformed ones (the error names
// the bit offset), and a length of 258 coded as symbol 284, which some encoders may write but
// which no token can rebuild. The whole stream and its plain data are held in memory.
package reflate
