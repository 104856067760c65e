# close.pl A B TOL: the tensors of two safetensors files of one model, float
# by float: prints the largest difference relative to the largest value;
# exits 1 when it is over TOL or the files' layouts differ.
use strict;
my ($fa, $fb, $tol) = @ARGV;
sub tensors {
  my ($f) = @_;
  open(my $h, "<:raw", $f) or die "$f: $!";
  local $/; my $all = <$h>;
  my $n = unpack("Q<", substr($all, 0, 8));
  my $head = substr($all, 8, $n);
  my %t;
  while ($head =~ /"([^"]+)":\{"dtype":"F32","shape":\[[^\]]*\],"data_offsets":\[(\d+),(\d+)\]\}/g) {
    $t{$1} = [unpack("f<*", substr($all, 8 + $n + $2, $3 - $2))];
  }
  return \%t;
}
my ($a, $b) = (tensors($fa), tensors($fb));
my @names = sort keys %$a;
die "no tensors in $fa\n" unless @names;
my ($worst, $at, $big) = (0, "", 0);
for my $k (@names) {
  my ($x, $y) = ($a->{$k}, $b->{$k});
  die "$k: in $fa only, or of another size in $fb\n" unless $y && @$x == @$y;
  for my $i (0 .. $#$x) {
    my $d = abs($x->[$i] - $y->[$i]);
    $big = abs($x->[$i]) if abs($x->[$i]) > $big;
    ($worst, $at) = ($d, "$k\[$i\]") if $d > $worst;
  }
}
my $rel = $big > 0 ? $worst / $big : $worst;
printf "%d tensors, largest difference %.3g (%s), %.3g of the largest value\n", scalar @names, $worst, $at, $rel;
exit($rel <= $tol ? 0 : 1);
