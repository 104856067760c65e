// test_schedule.c: learning-rate schedules against PyTorch's closed forms:
// StepLR (lr * gamma^(epoch // step_size)), CosineAnnealingLR
// (min + (lr - min) * (1 + cos(pi * epoch / t_max)) / 2, also past t_max), and a linear
// warmup over the first steps ((step + 1) / warmup of the rate).
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
  expect("constant", train_schedule_lr(&m, 0.1, 7, 1000, 10), 0.1);

  m.sched = (ScheduleConfig){.kind = SCHED_STEP, .step_size = 2, .gamma = 0.5};
  double step_want[] = {0.1, 0.1, 0.05, 0.05, 0.025};
  for (int e = 0; e < 5; e++)
    expect("step", train_schedule_lr(&m, 0.1, e, 0, 10), step_want[e]);

  m.sched = (ScheduleConfig){.kind = SCHED_COSINE, .t_max = 4, .min_lr = 0.001};
  // CosineAnnealingLR(T_max = 4, eta_min = 0.001) from lr 0.1, epochs 0 to 9:
  // past T_max the rate is not held at eta_min but climbs back (period 8).
  double cos_want[] = {0.1, 0.0855017856687341, 0.0505, 0.0154982143312659, 0.001,
                       0.01549821433126589, 0.05049999999999999, 0.0855017856687341, 0.1,
                       0.08550178566873412};
  for (int e = 0; e < 10; e++)
    expect("cosine", train_schedule_lr(&m, 0.1, e, 0, 10), cos_want[e]);
  m.sched.t_max = 0;   // t_max defaults to the run's epochs
  expect("cosine t_max = epochs", train_schedule_lr(&m, 0.1, 5, 0, 10), 0.001 + 0.099 * (1 + cos(M_PI / 2)) / 2);

  m.sched = (ScheduleConfig){.kind = SCHED_CONSTANT, .gamma = 1, .warmup = 10};
  expect("warmup step 0", train_schedule_lr(&m, 0.1, 0, 0, 10), 0.01);
  expect("warmup step 4", train_schedule_lr(&m, 0.1, 0, 4, 10), 0.05);
  expect("warmup done", train_schedule_lr(&m, 0.1, 0, 10, 10), 0.1);
  m.sched.kind = SCHED_STEP;
  m.sched.step_size = 1;
  m.sched.gamma = 0.1;
  expect("warmup with step", train_schedule_lr(&m, 0.1, 1, 4, 10), 0.1 * 0.1 * 0.5);

  return t_finish("test_schedule");
}
