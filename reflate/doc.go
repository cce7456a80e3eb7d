// Package reflate splits a raw deflate stream (RFC 1951) into the plain data it holds plus
// reconstruction data, and rebuilds the exact stream, bit for bit, from the two. It lets a
// delta or a deduplicating store see the plain data of gzip files, zip members, VMDK grains or
// qcow2 clusters whatever made them, and still give back the shipped compressed bytes.
//
// SplitStream and RebuildStream work on streams of any size in bounded memory (Split and
// Rebuild are their in-memory forms). The stream is parsed into chunks of about 1 MiB of plain
// data (cut at the first block end after 1 MiB, inside a block at 2 MiB, or after 32768
// blocks); a chunk's model needs only the 64 KiB of plain data before it and 262 bytes after
// it, so memory does not grow with the stream: Split holds one chunk (its plain data, 4 bytes
// per token) and Rebuild at most six chunks (four being rebuilt, one read, one written),
// a few tens of MiB (BENCHMARKS.md).
// The reconstruction data is held in memory: a ~40-byte header, then per chunk about 20 bytes
// plus what the prediction misses (a few bytes per block and per token correction, all
// deflated), so it is ~0.01% of the stream for the producers the model knows and at worst
// (an unknown producer) about a correction per token.
//
// Each chunk is parsed into blocks (stored, fixed, dynamic), each dynamic block's header as
// written and its tokens (literals and length/distance matches). Most of that is predicted from
// the plain data, and only what the prediction misses is stored:
//
//   - Tokens are predicted by a model of zlib's deflate (deflate.c; GNU gzip, Info-ZIP zip,
//     busybox gzip and pigz share its design): hash chains with zlib's hash (memLevel+7 bits),
//     longest_match with the level's good_length, nice_length and max_chain, deflate_fast below
//     level 4 and deflate_slow's lazy evaluation with the TOO_FAR rule from level 4, matches at
//     most MAX_DIST (the window, 1<<windowBits, minus 262) back. The level, windowBits (9-15)
//     and memLevel (1-9) are detected on the first chunk: the model whose tokens differ least
//     from the stream's over its first 256 KiB, trying zlib's defaults (15, 8), qemu's qcow2
//     clusters (12, 9) and (15, 9) at every level first. The model is steered: where the
//     stream's token differs it carries on from the stream's token, so a difference costs one
//     correction. Each chunk's model starts afresh, so Rebuild runs chunks on all cores: at
//     lazy levels (4-9) from hash chains holding every string of the 32 KiB before the chunk
//     (as deflate_slow's) and the lazy evaluation state recorded for it; at fast levels from
//     chains filled by running the model over the 64 KiB before the chunk (deflate_fast
//     leaves the strings inside long matches out, and which those are depends on the tokens).
//   - Restart points model producers that compress pieces independently (pigz's 128 KiB
//     pieces, each a new deflate stream primed with the previous 32 KiB): the model's data ends
//     at the next restart point and the hash chains start afresh from the last 32 KiB.
//   - Dynamic block headers are predicted with zlib's trees.c from the block's symbol counts
//     (build_tree's heap order, gen_bitlen's length limit, scan_tree's run-length coding,
//     the code length code and its trimmed count); a header that differs, or whose block
//     goes on into the next chunk, is stored whole.
//   - Block types, block sizes (in tokens; stored blocks in bytes), the padding bits before
//     stored blocks and after the final block are stored as they are: a few bytes per block.
//   - A stream of one chunk (at most about 2 MiB of plain data, such as a 64 KiB VMDK grain
//     or qcow2 cluster) whose tokens the zlib model misses is also tried with a model of
//     zlib-ng 2.2's deflate (zlibng_match.go; Fedora's qemu-img is linked with zlib-ng),
//     kept as method 2 when its reconstruction data is smaller. It works on the whole stream,
//     so it is limited to what Split holds anyway: the first chunk, when it is also the last;
//     larger zlib-ng streams stay with the zlib model.
//   - A stream that this build's compress/flate makes at some level from the plain data (in
//     any sequence of Writes, then Close) is stored as that level alone. The check runs
//     alongside the split, each level dropping out at its first different byte, and only
//     when the model misses tokens of the first chunk.
//
// SplitGzip, SplitZlib and RebuildGzip do the same for a whole gzip file (every member, the
// headers kept verbatim, the trailers checked and computed again) and for a zlib stream; see
// gzip.go for their format.
//
// Nothing wrong is written silently: each chunk's CRC-32 is recorded, and RebuildStream checks
// a rebuilt chunk before it writes it; the stream's length and CRC-32 are checked at its end.
// Split checks itself the same way: it rebuilds each chunk from its record before going on.
//
// Reconstruction data, version 2 (integers are unsigned LEB128 varints unless sized):
//
//	"RFL" 2            magic and format version
//	method             1 byte: 0 = Go compress/flate, 1 = zlib model, 2 = zlib-ng model
//	method 0:          level+2 (1 byte), stream length, CRC-32 of the stream (4 bytes LE),
//	                   plain length; nothing follows
//	method 1:          level, windowBits, memLevel (1 byte each), stream length, CRC-32 (4
//	                   bytes LE), plain length, the body's coding (1 byte: 1 deflated, 0 as
//	                   is, for a few small records), then the body: the chunk records (a
//	                   compress/flate stream of them if deflated), the last one flagged
//	method 2:          the level byte (bits 0-3 the level, 1-9; bits 4-6 windowBits-8; bit 7
//	                   deflate_medium's insertion cap of zlib-ng releases after 2.2.2), stream
//	                   length, CRC-32 (4 bytes LE), plain length (at most 8 MiB), the body's
//	                   coding (1 byte, as method 1's), then the body: three sections, each a
//	                   length and its bytes:
//	  blocks           count, then per block a flags byte and the stored length or token
//	                   count as in a chunk record (bits 5 and 6 unused), then the end padding
//	  headers          the stored dynamic block headers in block order, coded as in a chunk
//	                   record
//	  corrections      count, then per difference: the number of tokens since the previous
//	                   difference, the stream's match length (0 for a literal) and, for a
//	                   match, its distance
//
// A chunk record:
//
//	plain length       of the chunk
//	flags              bits 0-2 the bit at which the chunk starts in its first byte, bit 3 last
//	                   chunk, bit 4 lazy state valid
//	crc32              4 bytes LE: CRC-32 of the chunk's bytes, the bits before its first bit
//	                   and after its last bit zero
//	lazy state         if valid: pending match length and distance
//	blocks             count, then per block (or part of one) a flags byte (bit 0 final, bits
//	                   1-2 type, bit 3 header stored, bit 4 stored block with non-zero padding,
//	                   bit 5 goes on in the next chunk, bit 6 began in the previous chunk), then
//	                   the stored length (then the padding byte if flagged) or the token count,
//	                   then the header if stored: HLIT-257, HDIST-1, HCLEN-4 (1 byte each),
//	                   HCLEN+4 code length code lengths (1 byte each), the number of code length
//	                   symbols, then each symbol (1 byte) followed by its repeat bits (1 byte)
//	                   for symbols 16, 17 and 18
//	end padding        last chunk: the bits after the final block (1 byte)
//	restart points     count, then each as the distance in plain bytes from the previous one
//	                   (the first from the chunk's start); one may be at the chunk's end
//	corrections        count, then per difference: the number of tokens since the previous
//	                   difference, the stream's match length (0 for a literal) and, for a
//	                   match, rank+1, where rank counts the model's hash chain candidates at that
//	                   position (nearest first, those matching at least that length, at most
//	                   4096 steps) before the match's; or 0 and the distance where the match is
//	                   not in the chain
//
// Version 1 (the first, in-memory format, never stored by a recipe) is refused with an error
// that says to split the stream again.
//
// Streams this package does not take (an error from Split): malformed ones (the error names
// the bit offset), and a length of 258 coded as symbol 284, which some encoders may write but
// which no token can rebuild.
package reflate
