"""radcds worklist: the radiologist's reading-room web application and the post-market monitoring of each model.

NOT FOR DIAGNOSTIC USE: the AI findings it shows come from quantitative image algorithms, not trained diagnostic AI.
"""
