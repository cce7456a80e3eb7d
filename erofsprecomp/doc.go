// Package erofsprecomp expands the LZMA clusters of an EROFS image that this build's liblzma
// reproduces bit for bit, and rebuilds the image from that expanded form: the EROFS
// counterpart of precomp (zstd frames inside a squashfs). The expanded form shows the files'
// plain data, so a delta against an uncompressed source (a disk holding the same files) finds
// it; Restore compresses the clusters again on every core and gives back the original bytes.
//
// mkfs.erofs -zlzma compresses each physical cluster with lzma_microlzma_encoder, asking for as
// much input as fits in the cluster's output; the encoder reads ahead of what it takes, so a
// cluster is reproduced from its plain data plus the bytes that followed it in mkfs.erofs's
// queue (the rest of the file, up to Lookahead bytes). Scan finds the preset and dictionary
// (see lzmarepro) and which clusters reproduce; the others stay as they are.
//
// The expanded stream is self-describing:
//
//	"RHEROFSX"  8 bytes
//	version     uvarint (1)
//	params      uvarint count, then per entry uvarint preset, dictionary size, properties byte
//	clusters    uvarint count, then per cluster:
//	            uvarint gap (original bytes since the end of the previous cluster),
//	            uvarint cluster length (bytes in the original),
//	            uvarint stream length (the MicroLZMA stream, right-aligned after zeros),
//	            uvarint plain length (bytes in the expanded body),
//	            uvarint lookahead<<1 | explicit, uvarint params index
//	body        the original bytes, each expanded cluster replaced by its plain data, followed
//	            by its lookahead bytes when explicit (otherwise the lookahead is the body's
//	            next bytes)
//
// Like archive/tar and compress/*, the package works on io.ReaderAt, io.Reader and io.Writer;
// memory stays bounded by a few clusters per worker plus liblzma's tables (about 100 MiB per
// worker at preset 6, much of it touched only as far as inputs reach).
package erofsprecomp
