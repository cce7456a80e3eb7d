// Package filemap lays a base image's file data out where a target image has the same files,
// so that a delta between them copies every file, however small, in one piece.
//
// A block-indexed delta finds a file of the base inside the target only when the file's bytes
// are contiguous in both at a granularity the index sees. A disk filesystem (ext4, XFS) puts
// each small file alone in its own 4 KiB block; squashfs packs small files and the tails of
// large ones end to end into fragment blocks (EROFS -Efragments into one packed inode), at no
// alignment. A file of 1 KiB sits in the target beside other files' bytes, and in the base
// beside the zeros of its block's slack: no base block's content appears in the target, and a
// match shorter than the delta's minimum anchor is never tried.
//
// So the files are paired by path (or by size and content), and a base synthesis Map says, run by
// run, which base bytes to put at which offset of a synthetic base of the target's size. A
// Reader reads that synthetic base lazily out of the real one (optionally with the whole base
// appended, so content the map does not cover can still be found). The delta against it finds
// every paired file at the very offset where the target has it.
//
// The package is format-neutral: the file lists come from filesystem readers (ext4, xfs,
// squashfs), the target's offsets translated into an expanded stream by an Expansion.
package filemap
