#!/usr/bin/env python3
# make_seeds.py: writes the seed inputs of the libFuzzer targets
# (corpus/TARGET/) and the regression inputs (regress/TARGET/): small valid
# files of every kind each reader takes, and inputs that once made a reader
# crash, misread or allocate far more than the file justified. run.sh
# replays both; only corpus/ seeds the fuzzing.
#
#   python3 tests/fuzz/make_seeds.py      (from anywhere; rewrites the files)
import gzip, os, struct, zlib

HERE = os.path.dirname(os.path.abspath(__file__))

def write(kind, target, name, data):
    d = os.path.join(HERE, kind, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), 'wb') as f:
        f.write(data.encode() if isinstance(data, str) else data)

def gz(data):   # deterministic gzip: no name, no time
    return gzip.compress(data, compresslevel=6, mtime=0)

# IDX
def idx(code, dims, payload):
    return bytes([0, 0, code, len(dims)]) + b''.join(struct.pack('>I', d) for d in dims) + payload

images = idx(0x08, [3, 2, 2], bytes(range(0, 240, 20)))
labels = idx(0x08, [3], bytes([1, 0, 2]))
f32 = idx(0x0D, [2, 3], b''.join(struct.pack('>f', v) for v in [1.5, -2, 0, 3e5, 0.25, -1]))
f64 = idx(0x0E, [1, 2], struct.pack('>2d', 0.5, -7))
i32 = idx(0x0C, [3], struct.pack('>3i', 2, 70000, 0))
i16 = idx(0x0B, [2, 1], struct.pack('>2h', -3, 300))
i8 = idx(0x09, [2, 2], bytes([0, 1, 0xff, 0x80]))
for name, b in [('images', images), ('labels', labels), ('f32', f32), ('f64', f64), ('i32', i32),
                ('i16', i16), ('i8', i8), ('dims8', idx(0x08, [1] * 8, b'\x07'))]:
    write('corpus', 'idx', name, b)
# 20M images of 28x28 claimed by a 216-byte file (15 GB asked before reading)
claim = idx(0x08, [20000000, 28, 28], bytes(200))
write('regress', 'idx', 'claim-20M-images', claim)
write('regress', 'idx', 'nan-float', idx(0x0D, [1, 2], struct.pack('>2I', 0x3f800000, 0x7fc00000)))

write('corpus', 'idx_gz', 'images.gz', gz(images))
write('corpus', 'idx_gz', 'labels.gz', gz(labels))
write('corpus', 'idx_gz', 'two-members.gz', gz(images[:9]) + gz(images[9:]))
write('corpus', 'idx_gz', 'plain-f32', f32)   # compressed by the target
write('regress', 'idx_gz', 'claim-20M-images.gz', gz(claim))
write('regress', 'idx_gz', 'trailing-junk.gz', gz(images) + b'junk')
write('regress', 'idx_gz', 'trailing-zero.gz', gz(images) + b'\0')
write('regress', 'idx_gz', 'cut.gz', gz(images)[:-5])

# CSV, label,pixel0,... layout
write('corpus', 'csv', 'labeled.csv', 'label,pixel0,pixel1,pixel2,pixel3\n7,0,255,51,102\n2,1,2,3,4.5\n')
write('corpus', 'csv', 'unlabeled-bom.csv', '\ufeffpixel0,pixel1,pixel2\n1,2,3\n4,5,6\n\n')
write('corpus', 'csv', 'crlf.csv', 'label,pixel0\r\n3,0\r\n\r\n5,1e2\r\n')
write('corpus', 'csv', 'cr.csv', 'label,pixel0,pixel1\r1,2,3\r\r4,5,6\r')
write('regress', 'csv', 'nul-label.csv', b'label,pixel0\n\x005,1\n')
write('regress', 'csv', 'nul-pixel.csv', b'label,pixel0\n1,25\x009\n')
# 50000 blank lines under a 2000-column header: 400 MB of rows asked before
blank = ','.join('pixel%d' % j for j in range(2000)) + '\n' * 50000 + ','.join(['1'] * 2000)
write('regress', 'csv', 'blank-lines.csv', blank)

# CSV tables with named columns
write('corpus', 'table_csv', 'xy.csv', 'x0,x1,y\n1,2,3\n-4,5e-1,6\n')
write('corpus', 'table_csv', 'ty.csv', 'y2,t,y0,y1,extra\r\n1,2,3,4,5\r\n\r\n6,7,8,9,10\r\n')
write('corpus', 'table_csv', 'bom-cr.csv', '\ufeffy,x1,x0\r3,2,1\r6,5,4')
write('regress', 'table_csv', 'nul.csv', b'x0,x1,y\n1,2\x00,3\n')
write('regress', 'table_csv', 'blank-lines.csv',
      ','.join('x%d' % j for j in range(2)) + ',y' + ',z' * 2000 + '\n' * 50000 + '1,2,3' + ',0' * 2000)

# PNG and PGM
def chunk(t, d):
    return struct.pack('>I', len(d)) + t + d + struct.pack('>I', zlib.crc32(t + d))

def png(w, h, color, depth, rows, plte=None, extra=b'', idat_split=False, empty_idat=False):
    ihdr = struct.pack('>IIBBBBB', w, h, depth, color, 0, 0, 0)
    z = zlib.compress(b''.join(rows), 9)
    out = b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', ihdr) + extra
    if plte:
        out += chunk(b'PLTE', plte)
    if empty_idat:
        out += chunk(b'IDAT', b'')
    if idat_split:
        out += chunk(b'IDAT', z[:len(z) // 2]) + chunk(b'IDAT', z[len(z) // 2:])
    else:
        out += chunk(b'IDAT', z)
    return out + chunk(b'IEND', b'')

write('corpus', 'image', 'gray8.png', png(3, 2, 0, 8, [b'\0\x00\x80\xff', b'\1\x10\x10\x10']))
write('corpus', 'image', 'rgba16.png', png(2, 2, 6, 16, [b'\2' + bytes(range(16)), b'\4' + bytes(range(16, 32))],
                                            extra=chunk(b'tEXt', b'Comment\0seed'), idat_split=True))
write('corpus', 'image', 'palette1.png', png(9, 2, 3, 1, [b'\0\xaa\x80', b'\3\x55\x00'], plte=b'\0\0\0\xff\x80\x00'))
write('corpus', 'image', 'graya8.png', png(2, 1, 4, 8, [b'\1\x40\xff\x20\x00']))
write('corpus', 'image', 'rgb8.png', png(1, 2, 2, 8, [b'\0\xff\x00\x00', b'\2\x00\xff\x00']))
write('corpus', 'image', 'p2.pgm', 'P2\n# comment\n3 2\n10\n0 5 10\n10 0 2\n')
write('corpus', 'image', 'p5.pgm', b'P5 2 2 255\n\x00\x33\xcc\xff')
write('corpus', 'image', 'p5-16.pgm', b'P5\n2 1\n1000\n\x01\xf4\x03\xe8')
write('corpus', 'image', 'p6.ppm', b'P6 1 1 255\n\xff\x00\x00')
write('corpus', 'image', 'p3.ppm', 'P3 1 1 65535 0 65535 0')
# an empty IDAT first: memcpy to a NULL buffer (UBSan)
write('regress', 'image', 'empty-idat.png', png(2, 1, 0, 8, [b'\0\x01\x02'], empty_idat=True))
# 8192x8192 RGBA16 claimed over three rows of data: 512 MB allocated before inflating
write('regress', 'image', 'claim-8192.png', png(8192, 8192, 6, 16, [bytes(1 + 8192 * 8)] * 3))
# 1x3M 1-bit gray: resizing through [src_h, 28] took 336 MB; [28, 1] now
write('regress', 'image', 'tall-1x3M.png', png(1, 3 * 1000 * 1000, 0, 1, [b'\0\x80'] * (3 * 1000 * 1000)))
# 8192x8192 pixels claimed by a 20-byte P2 / P5 header: 256 MB of floats before
write('regress', 'image', 'claim-p2.pgm', 'P2 8192 8192 255\n0 0\n')
write('regress', 'image', 'claim-p5.pgm', b'P5 8192 8192 255\n\0\0\0')
write('regress', 'image', 'text-mode.png', png(1, 1, 0, 8, [b'\0\0']).replace(b'\r\n', b'\n', 1))

# safetensors
def st(header, data=b''):
    h = header.encode()
    h += b' ' * (-len(h) % 8)
    return struct.pack('<Q', len(h)) + h + data

write('corpus', 'safetensors', 'ck.safetensors',
      st('{"__metadata__":{"step":"12","cursor":"epoch=1 pos=2 rng=00ff:0001"},'
         '"b":{"dtype":"F64","shape":[2],"data_offsets":[0,16]},'
         '"w":{"dtype":"F32","shape":[2,3],"data_offsets":[16,40]},'
         '"s":{"dtype":"I32","shape":[],"data_offsets":[40,44]},'
         '"u":{"dtype":"U8","shape":[3],"data_offsets":[44,47]},'
         '"e":{"dtype":"I64","shape":[0,4],"data_offsets":[47,47]}}',
         struct.pack('<2d6fi', 1.5, -2, *range(6), -7) + b'\1\2\3'))
write('corpus', 'safetensors', 'empty.safetensors', st('{}'))
write('corpus', 'safetensors', 'misaligned.safetensors',
      st('{"u":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},'
         '"f":{"dtype":"F32","shape":[1],"data_offsets":[1,5]}}', b'\7' + struct.pack('<f', 2.5)))
write('corpus', 'safetensors', 'escapes.safetensors',
      st('{"__metadata__":{"k\\u00e9\\ud83d\\ude00":"a\\tb\\"c\\\\"},'
         '"n\\/1":{"dtype":"I64","shape":[1],"data_offsets":[0,8]}}', struct.pack('<q', -1)))
