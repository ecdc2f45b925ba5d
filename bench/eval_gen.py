#!/usr/bin/env python3
"""Deterministic generator of the long-term memory evaluation (bench/eval_recall.c).

Multi-session conversations of many users. Each user states facts once, in one session
(sometimes split over two turns, sometimes updated later), among filler chat that reuses
the same vocabulary (other people's dogs, other trips, other dates), and asks about them
in a final session, paraphrased: about names, places, dates and order, some needing two
facts at once. Other users have the same kinds of facts with other values, so a recall
that leaks across users would often find a plausible wrong answer.

Output (JSON lines, stdout or the file named by argv[1]):
  {"t":"m","user","chat","id","role":"user"|"model","text","ts"}   a stored message
  {"t":"q","user","qid","kind","text","ev":[[id,...],...],"split":"tune"|"test","ts"}
ev: groups of evidence; a group is found when any of its ids is retrieved (the user's
statement or the model's echo of it). Questions alternate tune/test by user parity.
Same seed, same output, on every machine (Python's random with a fixed seed).
"""
import json
import random
import sys

SEED = 20240601
USERS = 32
R = random.Random(SEED)

FIRST = ["Clara", "Marco", "Aisha", "Tomás", "Yuki", "Priya", "Lena", "Omar", "Sofia",
         "Jonas", "Mei", "Diego", "Hannah", "Ravi", "Elif", "Noah", "Ingrid", "Kofi",
         "Zara", "Felix", "Nadia", "Luca", "Amara", "Henrik", "Chloé", "Mateo", "Sanna",
         "Idris", "Leila", "Oskar"]
CITIES = ["Lisbon", "Porto", "Berlin", "Munich", "Osaka", "Kyoto", "Toronto", "Denver",
          "Nairobi", "Lyon", "Seville", "Krakow", "Melbourne", "Austin", "Oslo",
          "Valencia", "Dublin", "Hamburg", "Bologna", "Tallinn", "Quebec", "Glasgow"]
BREEDS = [("dog", "beagle"), ("dog", "golden retriever"), ("dog", "border collie"),
          ("dog", "dachshund"), ("cat", "maine coon"), ("cat", "siamese"),
          ("cat", "tabby"), ("rabbit", "lop-eared rabbit")]
PETNAMES = ["Biscuit", "Pepper", "Mochi", "Waffles", "Juniper", "Ziggy", "Olive",
            "Pickles", "Nugget", "Pretzel", "Maple", "Tofu"]
JOBS = ["nurse", "architect", "data analyst", "pastry chef", "lawyer", "pilot",
        "high school teacher", "physiotherapist", "software engineer", "journalist",
        "veterinarian", "civil engineer"]
COMPANIES = ["Nordwind Logistics", "Bluepeak Analytics", "Cedar Health", "Ferro Motors",
             "Lumen Studios", "Harbor Bank", "Quill Publishing", "Tessel Robotics",
             "Greenfield Foods", "Orbit Telecom", "Saffron Hotels", "Atlas Insurance"]
ALLERGENS = ["peanuts", "shellfish", "gluten", "sesame", "lactose", "kiwi", "eggs",
             "tree nuts"]
CARS = ["Volvo V60", "Toyota Corolla", "Mazda CX-5", "Skoda Octavia", "Honda Civic",
        "Kia Niro", "Subaru Outback", "Renault Clio"]
COLORS = ["dark green", "silver", "bright red", "navy blue", "white", "charcoal grey"]
INSTRUMENTS = ["cello", "ukulele", "piano", "saxophone", "violin", "drums", "banjo"]
EVENTS = ["my cousin's wedding", "a medical conference", "my grandmother's 90th birthday",
          "a job interview", "the marathon", "a friend's graduation"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December"]
SPORTS = ["climbing", "swimming", "tennis", "running", "yoga", "cycling", "rowing"]
FOODS = ["ramen", "lasagna", "pad thai", "shakshuka", "tacos", "risotto", "pho",
         "dumplings", "paella", "moussaka"]


def date():
    return f"{R.choice(MONTHS)} {R.randint(1, 28)}"


# ---- filler: everyday chat that shares the facts' vocabulary -----------------------------
def filler_user():
    n, c, f = R.choice(FIRST), R.choice(CITIES), R.choice(FOODS)
    s, b = R.choice(SPORTS), R.choice(BREEDS)
    t = R.choice([
        f"My neighbour's {b[1]} barked all night again, any tips for sleeping through noise?",
        f"I made {f} for dinner yesterday but it came out too salty. How do I fix that?",
        f"Can you explain how compound interest works with a simple example?",
        f"My friend {n} recommended a podcast about {c}, have you heard of it?",
        f"What's a good stretching routine after {s}?",
        f"I watched a documentary about {c} last night, the architecture looked amazing.",
        f"How long should I boil eggs for a soft yolk?",
        f"My coworker {n} keeps scheduling meetings at lunch time, how do I push back politely?",
        f"Write a short poem about autumn rain.",
        f"Is it worth learning Rust if I already know Python?",
        f"My sister's friend {n} is visiting {c} in {R.choice(MONTHS)}, what should she see?",
        f"What's the difference between baking soda and baking powder?",
        f"I need a birthday gift idea for a colleague who likes {s}.",
        f"Our team lunch is at a {f} place tomorrow, what should I order?",
        f"How do I get red wine out of a white shirt?",
        f"My brother-in-law bought a {R.choice(CARS)}, is that a reliable car?",
        f"Can you summarise the plot of Hamlet in three sentences?",
        f"I'm thinking of taking up {s}, what gear do I need to start?",
        f"The flight prices to {c} are crazy right now, when is the cheapest time to book?",
        f"My cat knocked a glass off the table again, why do cats do that?",
        f"What are some good houseplants for a dark apartment?",
        f"I have a presentation at work on {date()}, how do I calm my nerves?",
        f"{n} asked me to help move house this weekend, how do I pack books efficiently?",
        f"Recommend a novel set in {c}.",
        f"Is {f} healthy or more of a treat meal?",
        f"How many hours of sleep does an adult really need?",
        f"What's a polite way to decline a wedding invitation?",
        f"My dog {R.choice(['loves', 'hates'])} the rain, is that normal?" if R.random() < 0.3
        else f"My friend's {b[0]} {R.choice(PETNAMES)} is so cute, she sent me photos today.",
    ])
    return t


def filler_model(u):
    words = [w.strip("?,.!'") for w in u.split() if len(w) > 5]
    w = R.choice(words) if words else "that"
    return R.choice([
        f"Good question! When it comes to {w}, a few things usually help.",
        f"Here are some ideas about {w} you could try.",
        f"Sure. Briefly: it depends on your situation, but {w} is a good place to start.",
        f"That sounds frustrating. Many people deal with {w}; let's go step by step.",
        f"Happy to help with {w}. Let me know if you want more detail.",
    ])


# ---- facts: each returns (turns, questions) ----------------------------------------------
# A turn is (role, text, group_tag or None); questions are (kind, text, [group_tags]).
def fact_pet(u):
    sp, br = R.choice(BREEDS)
    nm = R.choice(PETNAMES)
    turns = [("user", R.choice([
        f"We finally adopted a {br} from the shelter, we're calling {'him' if R.random() < .5 else 'her'} {nm}.",
        f"Big news: there's a new {br} in our flat! The kids named it {nm}.",
    ]), "pet"), ("model", f"Congratulations! {nm} is a lovely name for a {br}.", "pet")]
    qs = [("pet", R.choice([f"What's the name of my {sp} again?",
                            f"Remind me what we called the {sp} we adopted?",
                            f"What did the kids name our new pet?"]), ["pet"]),
          ("pet-breed", R.choice(["What breed is my pet?",
                                  f"What kind of {sp} did we get from the shelter?"]), ["pet"])]
    return turns, qs


def fact_sister(u):
    nm, job, c = R.choice(FIRST), R.choice(JOBS), R.choice(CITIES)
    turns = [("user", f"My sister {nm} just got a job as a {job} in {c}, I'm so proud of her.", "sis"),
             ("model", f"That's wonderful news about {nm}! Moving to {c} for a new role is a big step.", "sis")]
    qs = [("sister-job", R.choice(["What does my sister do for a living?",
                                   f"What is {nm}'s profession?"]), ["sis"]),
          ("sister-city", R.choice(["Which city did my sister move to for work?",
                                    f"Where is {nm} working these days?"]), ["sis"])]
    return turns, qs


def fact_allergy(u):
    a = R.choice(ALLERGENS)
    turns = [("user", f"Quick note for later: I'm allergic to {a}, so keep that in mind whenever we talk recipes.", "allergy"),
             ("model", f"Noted, I'll avoid {a} in any suggestions.", "allergy")]
    qs = [("allergy", R.choice(["Can you suggest a dinner recipe that is safe for my allergy?",
                                "What food am I allergic to?",
                                "Which ingredient must I avoid in meals?"]), ["allergy"])]
    return turns, qs


def fact_car(u):
    car, col = R.choice(CARS), R.choice(COLORS)
    turns = [("user", f"I just bought a used {car} in {col}, it has only 40,000 km on it.", "car"),
             ("model", f"Nice find! A {car} with that mileage should last a long time.", "car")]
    qs = [("car", R.choice(["What car do I drive now?", "Which vehicle did I purchase?",
                            "What colour is my car?"]), ["car"])]
    return turns, qs


def fact_trip(u):
    c, d, ev = R.choice(CITIES), date(), R.choice(EVENTS)
    turns = [("user", f"I'm flying to {c} on {d} for {ev}.", "trip"),
             ("model", f"Safe travels! I hope {ev.replace('my ', 'your ')} goes well.", "trip")]
    qs = [("date", R.choice([f"When is my flight to {c}?",
                             f"What date do I travel for {ev.replace('my ', 'my ')}?",
                             f"On which day am I leaving for {c}?"]), ["trip"]),
          ("trip-city", f"Where am I going for {ev}?", ["trip"])]
    return turns, qs


def fact_kid(u):
    k, n, d = R.choice(FIRST), R.randint(4, 12), date()
    turns = [("user", f"My daughter {k} turns {n} on {d} and she wants a dinosaur party.", "kid"),
             ("model", f"A dinosaur party sounds fun! Happy early birthday to {k}.", "kid")]
    qs = [("date", R.choice([f"When is {k}'s birthday?", "When is my daughter's birthday party?"]), ["kid"]),
          ("kid-age", "How old is my daughter turning?", ["kid"])]
    return turns, qs


def fact_instrument(u):
    i = R.choice(INSTRUMENTS)
    turns = [("user", f"I've been learning to play the {i}, I practice every evening after work.", "instr"),
             ("model", f"Consistency is key with the {i}. Short daily sessions work best.", "instr")]
    qs = [("hobby", R.choice(["Which musical instrument am I practising?",
                              "What instrument have I been learning?"]), ["instr"])]
    return turns, qs


def fact_friend_split(u):
    f = R.choice(FIRST)
    turns = [("user", "My best friend is getting married next spring!", None),
             ("model", "Congratulations to them! What's your friend's name?", None),
             ("user", f"{f}. We've known each other since primary school.", "friend")]
    qs = [("split", R.choice(["What is my best friend's name?",
                              "Who is the friend getting married next spring?"]), ["friend"])]
    return turns, qs


def fact_dentist(u):
    d, h = date(), R.choice(["8:30", "10:15", "14:00", "16:45"])
    turns = [("user", f"Reminder: my dentist appointment is on {d} at {h}.", "dent"),
             ("model", f"Got it: dentist on {d} at {h}.", "dent")]
    qs = [("date", R.choice(["When do I have to see the dentist?",
                             "What time is my dental checkup?"]), ["dent"])]
    return turns, qs


FACTS = [fact_pet, fact_sister, fact_allergy, fact_car, fact_trip, fact_kid, fact_instrument,
         fact_friend_split, fact_dentist]


def two_fact_jobs(u):
    j1, j2 = R.sample(JOBS, 2)
    c1, c2 = R.sample(COMPANIES, 2)
    t1 = [("user", f"Before my current role I spent three years as a {j1} at {c1}.", "job1"),
          ("model", f"Three years at {c1} is solid experience.", "job1")]
    t2 = [("user", f"These days I work as a {j2} at {c2} and I love the team.", "job2"),
          ("model", f"Glad you enjoy it at {c2}!", "job2")]
    qs = [("order", f"Which company did I work for first, {c1} or {c2}?", ["job1", "job2"]),
          ("job-now", "Where do I work at the moment?", ["job2"])]
    return t1, t2, qs


def two_fact_siblings(u):
    b, s = R.sample(FIRST, 2)
    a1, a2 = R.sample(range(19, 45), 2)
    t1 = [("user", f"My brother {b} is turning {a1} next month, we're planning a surprise.", "bro"),
          ("model", f"A surprise for {b} sounds great!", "bro")]
    t2 = [("user", f"{s}, my other sibling, just turned {a2} and celebrated with a hiking trip.", "sib"),
          ("model", f"Happy birthday to {s}! Hiking is a great way to celebrate.", "sib")]
    qs = [("two-facts", f"Who is older, {b} or {s}?", ["bro", "sib"])]
    return t1, t2, qs


def two_fact_move(u):
    c1, c2 = R.sample(CITIES, 2)
    t1 = [("user", f"I live in {c1}, close to the old harbour.", "home1"),
          ("model", f"{c1} is a beautiful place to live.", "home1")]
    t2 = [("user", f"Update: we moved to {c2} last month, the new apartment is great.", "home2"),
          ("model", f"Congratulations on the move to {c2}!", "home2")]
    qs = [("update", R.choice(["Which city do I live in now?", "Where is my home these days?"]),
           ["home2"])]
    return t1, t2, qs


TWO = [two_fact_jobs, two_fact_siblings, two_fact_move]

DAY = 86400 * 1000
T0 = 1735689600 * 1000  # 2025-01-01


def main():
    out = open(sys.argv[1], "w") if len(sys.argv) > 1 else sys.stdout
    counter = 0

    def new_id(ts):
        nonlocal counter
        counter += 1
        return f"{ts // 1000:08x}{counter:016x}"

    qid = 0
    for ui in range(USERS):
        user = f"u{ui:02d}"
        nsess = R.randint(10, 16)
        sessions = [[] for _ in range(nsess)]
        for s in sessions:
            for _ in range(R.randint(6, 14)):
                t = filler_user()
                s.append(("user", t, None))
                s.append(("model", filler_model(t), None))
        questions = []
        tagmap = {}
        for fi, f in enumerate(R.sample(FACTS, len(FACTS))):
            turns, qs = f(user)
            si = R.randrange(nsess)
            pos = R.randint(0, len(sessions[si]) // 2) * 2
            sessions[si][pos:pos] = [(r, t, (fi, g) if g else None) for r, t, g in turns]
            questions += [(k, q, [(fi, g) for g in gs]) for k, q, gs in qs]
        for ti, f in enumerate(TWO):
            t1, t2, qs = f(user)
            a = R.randrange(nsess - 1)
            b = R.randrange(a + 1, nsess)
            key = 100 + ti
            for si, turns in ((a, t1), (b, t2)):
                pos = R.randint(0, len(sessions[si]) // 2) * 2
                sessions[si][pos:pos] = [(r, t, (key, g) if g else None) for r, t, g in turns]
            questions += [(k, q, [(key, g) for g in gs]) for k, q, gs in qs]
        ts = T0 + ui * 3600 * 1000
        for si, s in enumerate(sessions):
            ts += R.randint(2, 9) * DAY
            chat = new_id(ts)
            for role, text, tag in s:
                ts += R.randint(20, 200) * 1000
                mid = new_id(ts)
                if tag is not None:
                    tagmap.setdefault(tag, []).append(mid)
                out.write(json.dumps({"t": "m", "user": user, "chat": chat, "id": mid,
                                      "role": role, "text": text, "ts": ts},
                                     ensure_ascii=False) + "\n")
        ts += 14 * DAY
        for kind, q, groups in questions:
            ev = [tagmap[g] for g in groups]
            out.write(json.dumps({"t": "q", "user": user, "qid": qid, "kind": kind,
                                  "text": q, "ev": ev,
                                  "split": "tune" if ui % 2 == 0 else "test", "ts": ts},
                                 ensure_ascii=False) + "\n")
            qid += 1


if __name__ == "__main__":
    main()
