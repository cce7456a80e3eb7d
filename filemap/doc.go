// Package filemap lays a base image's file data out where a target image has the same files,
// so that a delta between them copies every file, however small, in one piece.
//
// The any-order delta finds a base match only from a window at a base block start, and it takes
// a match far (over 1 MiB) from its current diagonal only if it is 4 KiB long and no near match
// turns up in the next 4 MiB. A disk (ext4, XFS) starts each file on a block; squashfs and EROFS
// pack files and tails end to end in their own (sorted-path) order, while the disk holds them in
// another (ostree's object order). So a file under 4 KiB far from the previous copy is never
// taken, and larger ones are lost to near chance matches (docs/DESIGN-NOTES.md).
//
// So the files are paired by path (or by size and content), and a base synthesis Map says, run by
// run, which base bytes to put at which offset of a synthetic base of the target's size. A
// Reader reads that synthetic base lazily out of the real one (optionally with the whole base
// appended, so content the map does not cover can still be found). The delta against it finds
// every paired file at the very offset where the target has it.
//
// The package is format-neutral: the file lists come from filesystem readers (ext4, xfs,
// squashfs, erofs), the target's offsets translated into an expanded stream by an Expansion.
package filemap
