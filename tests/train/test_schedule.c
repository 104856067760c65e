// test_schedule.c: learning-rate schedules against PyTorch's closed forms:
// StepLR (lr * gamma^(epoch // step_size)), CosineAnnealingLR
// (min + (lr - min) * (1 + cos(pi * epoch / t_max)) / 2, also past t_max), and a linear
// warmup over the first steps ((step + 1) / warmup of the rate); OneCycleLR
// per step (anneal_strategy 'cos' and 'linear') and ReduceLROnPlateau per
// epoch, for a given sequence of validation losses, against the rates
// PyTorch's schedulers gave.
#include "../test.h"
#include "train.h"

#include <math.h>

// The rate within 1e-12 relative (absolute below 1).
#define expect(what, got, want) expect_at(__LINE__, (what), (got), (want))

static void expect_at(int line, const char *what, double got, double want) {
  t_record(__FILE__, line, fabs(got - want) <= 1e-12 * fmax(1, fabs(want)), "%s: %.17g, expected %.17g\n",
           what, got, want);
}

int main(void) {
  Model m = {0};
  m.sched = (ScheduleConfig){.kind = SCHED_CONSTANT, .gamma = 1};
  expect("constant", train_schedule_lr(&m, 0.1, 7, 1000, 10, 0), 0.1);

  m.sched = (ScheduleConfig){.kind = SCHED_STEP, .step_size = 2, .gamma = 0.5};
  double step_want[] = {0.1, 0.1, 0.05, 0.05, 0.025};
  for (int e = 0; e < 5; e++)
    expect("step", train_schedule_lr(&m, 0.1, e, 0, 10, 0), step_want[e]);

  m.sched = (ScheduleConfig){.kind = SCHED_COSINE, .t_max = 4, .min_lr = 0.001};
  // CosineAnnealingLR(T_max = 4, eta_min = 0.001) from lr 0.1, epochs 0 to 9:
  // past T_max the rate is not held at eta_min but climbs back (period 8).
  double cos_want[] = {0.1, 0.0855017856687341, 0.0505, 0.0154982143312659, 0.001,
                       0.01549821433126589, 0.05049999999999999, 0.0855017856687341, 0.1,
                       0.08550178566873412};
  for (int e = 0; e < 10; e++)
    expect("cosine", train_schedule_lr(&m, 0.1, e, 0, 10, 0), cos_want[e]);
  m.sched.t_max = 0;   // t_max defaults to the run's epochs
  expect("cosine t_max = epochs", train_schedule_lr(&m, 0.1, 5, 0, 10, 0), 0.001 + 0.099 * (1 + cos(M_PI / 2)) / 2);

  m.sched = (ScheduleConfig){.kind = SCHED_CONSTANT, .gamma = 1, .warmup = 10};
  expect("warmup step 0", train_schedule_lr(&m, 0.1, 0, 0, 10, 0), 0.01);
  expect("warmup step 4", train_schedule_lr(&m, 0.1, 0, 4, 10, 0), 0.05);
  expect("warmup done", train_schedule_lr(&m, 0.1, 0, 10, 10, 0), 0.1);
  m.sched.kind = SCHED_STEP;
  m.sched.step_size = 1;
  m.sched.gamma = 0.1;
  expect("warmup with step", train_schedule_lr(&m, 0.1, 1, 4, 10, 0), 0.1 * 0.1 * 0.5);

  // OneCycleLR(max_lr = 0.1, epochs = 4, steps_per_epoch = 5, pct_start = 0.3,
  // div_factor = 25, final_div_factor = 1e4, cycle_momentum = False) from
  // torch 2.15, the rate before each of the 20 steps; max_lr 0 takes the base.
  static const double one_want[20] = {
      0.0040000000000000036, 0.013167184270002533, 0.037167184270002526, 0.06683281572999747, 0.09083281572999748,
      0.1, 0.09874640062350874, 0.09504846320134738, 0.089091617757105, 0.0811745653949763, 0.07169430017913009,
      0.06112620219362893, 0.0500002, 0.03887419780637107, 0.028306099820869922, 0.0188258346050237,
      0.010908782242895003, 0.004951936798652629, 0.0012539993764912555, 4e-07};
  m.sched = (ScheduleConfig){.kind = SCHED_ONECYCLE, .gamma = 1, .pct_start = 0.3, .div_factor = 25,
                             .final_div_factor = 1e4};
  for (int t = 0; t < 20; t++)
    expect("onecycle", train_schedule_lr(&m, 0.1, t / 5, t, 4, 5), one_want[t]);
  // total_steps = 7, pct_start = 0.5, div_factor = 10, final_div_factor = 100, max_lr 0.02.
  static const double one7[7] = {0.0019999999999999983, 0.008218847050625472, 0.018281152949374525,
                                 0.019010678990345167,  0.01223298413022358,  0.003781336879431253, 2e-05};
  m.sched = (ScheduleConfig){.kind = SCHED_ONECYCLE, .gamma = 1, .max_lr = 0.02, .pct_start = 0.5, .div_factor = 10,
                             .final_div_factor = 100};
  for (int t = 0; t < 7; t++)
    expect("onecycle max_lr 0.02", train_schedule_lr(&m, 0.5, 0, t, 1, 7), one7[t]);

  // The same two with anneal_strategy = 'linear'.
  static const double lin_want[20] = {
      0.004, 0.023200000000000002, 0.04240000000000001, 0.0616, 0.08080000000000001, 0.1, 0.09285717142857143,
      0.08571434285714286, 0.0785715142857143, 0.07142868571428572, 0.06428585714285714, 0.05714302857142858,
      0.0500002, 0.042857371428571434, 0.03571454285714286, 0.028571714285714284, 0.02142888571428571,
      0.014286057142857148, 0.007143228571428573, 3.999999999976245e-07};
  m.sched = (ScheduleConfig){.kind = SCHED_ONECYCLE, .gamma = 1, .pct_start = 0.3, .div_factor = 25,
                             .final_div_factor = 1e4, .anneal_linear = true};
  for (int t = 0; t < 20; t++)
    expect("onecycle linear", train_schedule_lr(&m, 0.1, t / 5, t, 4, 5), lin_want[t]);
  static const double lin7[7] = {0.002, 0.009200000000000002, 0.016400000000000005, 0.017145714285714285,
                                 0.011437142857142858, 0.005728571428571428, 1.9999999999999185e-05};
  m.sched = (ScheduleConfig){.kind = SCHED_ONECYCLE, .gamma = 1, .max_lr = 0.02, .pct_start = 0.5, .div_factor = 10,
                             .final_div_factor = 100, .anneal_linear = true};
  for (int t = 0; t < 7; t++)
    expect("onecycle linear max_lr 0.02", train_schedule_lr(&m, 0.5, 0, t, 1, 7), lin7[t]);

  // ReduceLROnPlateau(mode = 'min', factor = 0.5, patience = 2, threshold =
  // 0.01, cooldown = 1, min_lr = 0.01) from lr 0.1: the rate after each
  // step(loss), torch 2.15. Small gains below the threshold do not count;
  // the rate stops at min_lr.
  static const double loss1[30] = {1.0, 0.995, 0.992, 0.991, 0.98, 0.975, 0.97, 0.969, 0.969, 0.5,
                                   0.5, 0.5,   0.5,   0.5,   0.5,  0.5,   0.5,  0.5,   0.5,   0.5,
                                   0.5, 0.5,   0.5,   0.5,   0.4,  0.5,   0.5,  0.5,   0.5,   0.5};
  static const double pla1[30] = {0.1,    0.1,    0.1,    0.05,   0.05,   0.05,  0.05,  0.05,  0.05,  0.05,
                                  0.05,   0.05,   0.025,  0.025,  0.025,  0.025, 0.0125, 0.0125, 0.0125, 0.0125,
                                  0.01,   0.01,   0.01,   0.01,   0.01,   0.01,  0.01,  0.01,  0.01,  0.01};
  m.sched = (ScheduleConfig){.kind = SCHED_PLATEAU, .gamma = 1, .factor = 0.5, .patience = 2, .threshold = 0.01,
                             .cooldown = 1, .min_lr = 0.01, .eps = 1e-8};
  Plateau p = train_plateau_start(0.1);
  for (int e = 0; e < 30; e++) {
    train_plateau_step(&m.sched, &p, loss1[e]);
    expect("plateau rel", p.lr, pla1[e]);
    expect("plateau schedule_lr", train_schedule_lr(&m, p.lr, e + 1, 0, 30, 1), pla1[e]);
  }
  // factor = 0.3, patience = 0, threshold = 0.05, threshold_mode = 'abs',
  // eps = 1e-3: the last reduction, by less than eps, is skipped.
  static const double loss2[10] = {2.0, 1.96, 1.9, 1.9, 1.8, 1.8, 1.8, 1.8, 1.8, 1.8};
  static const double pla2[10] = {0.1,   0.03,  0.03, 0.009, 0.009, 0.0026999999999999997, 0.0008099999999999998,
                                  0.0008099999999999998, 0.0008099999999999998, 0.0008099999999999998};
  m.sched = (ScheduleConfig){.kind = SCHED_PLATEAU, .gamma = 1, .factor = 0.3, .patience = 0, .threshold = 0.05,
                             .threshold_abs = true, .eps = 1e-3};
  p = train_plateau_start(0.1);
  for (int e = 0; e < 10; e++) {
    train_plateau_step(&m.sched, &p, loss2[e]);
    expect("plateau abs", p.lr, pla2[e]);
  }
  return t_finish("test_schedule");
}
